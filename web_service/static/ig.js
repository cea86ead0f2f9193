// The IG officer's unlock-service pages (break-glass reviews, subject access),
// over unlock.js: every call is signed in this tab with the officer's own key
// and relayed; subject access identities are opened here and never sent back.
import { call, el, keyPanel, label, openSealed, showError, statusText, when } from '/static/unlock.js'

const page = document.getElementById('page')
const errors = page.querySelector('.app-errors')
const DAY = 24 * 3600 * 1000

function failed (answer, what) {
  const body = answer.body || {}
  const text = body.reason_text || (typeof body.detail === 'string' ? body.detail : null) ||
    'The unlock service answered ' + answer.status
  showError(errors, what, text)
}

function problems (list) {
  errors.replaceChildren(el('div', { class: 'govuk-error-summary', role: 'alert', tabindex: '-1' },
    el('h2', { class: 'govuk-error-summary__title', text: 'There is a problem' }),
    el('div', { class: 'govuk-error-summary__body' },
      el('ul', { class: 'govuk-list govuk-error-summary__list' },
        list.map(([id, text]) => el('li', {}, el('a', { href: '#' + id, text })))))))
  errors.firstChild.focus()
}

function table (caption, headings, rows, numeric = []) {
  return el('table', { class: 'govuk-table' },
    el('caption', { class: 'govuk-table__caption govuk-table__caption--m', text: caption }),
    el('thead', { class: 'govuk-table__head' },
      el('tr', { class: 'govuk-table__row' },
        headings.map((h, i) => el('th', {
          scope: 'col',
          class: 'govuk-table__header' + (numeric.includes(i) ? ' govuk-table__header--numeric' : ''),
          text: h
        })))),
    el('tbody', { class: 'govuk-table__body' },
      rows.map((cells) => el('tr', { class: 'govuk-table__row' },
        cells.map((c, i) => el('td', {
          class: 'govuk-table__cell' + (numeric.includes(i) ? ' govuk-table__cell--numeric' : '')
        }, c))))))
}

function mono (text) {
  return el('span', { class: 'app-mono', text: text || '–' })
}

// The deadline in words; the tag's colour only repeats them.
export function deadline (review, now = new Date()) {
  if (review.status !== 'open') return el('strong', { class: 'govuk-tag govuk-tag--green', text: 'Closed' })
  const due = new Date(review.due_at)
  const days = Math.ceil((due - now) / DAY)
  if (due < now) {
    const late = Math.max(1, Math.floor((now - due) / DAY))
    return el('strong', { class: 'govuk-tag govuk-tag--red', text: 'Overdue by ' + late + (late === 1 ? ' day' : ' days') })
  }
  return el('strong', { class: 'govuk-tag govuk-tag--yellow', text: 'Due in ' + days + (days === 1 ? ' day' : ' days') })
}

function reviewForm (review, n) {
  const id = 'review-' + n
  const form = el('form', { novalidate: true, class: 'app-review-form', 'data-request': review.request_id },
    el('div', { class: 'govuk-form-group' },
      el('fieldset', { class: 'govuk-fieldset' },
        el('legend', { class: 'govuk-fieldset__legend govuk-fieldset__legend--s', text: 'Was the break-glass use justified?' }),
        el('div', { class: 'govuk-radios', 'data-module': 'govuk-radios' },
          el('div', { class: 'govuk-radios__item' },
            el('input', { class: 'govuk-radios__input', id: id + '-outcome', name: id + '-outcome', type: 'radio', value: 'upheld' }),
            el('label', { class: 'govuk-label govuk-radios__label', for: id + '-outcome', text: 'Yes: uphold it' })),
          el('div', { class: 'govuk-radios__item' },
            el('input', { class: 'govuk-radios__input', id: id + '-outcome-no', name: id + '-outcome', type: 'radio', value: 'not_upheld' }),
            el('label', { class: 'govuk-label govuk-radios__label', for: id + '-outcome-no', text: 'No: do not uphold it' }))))),
    el('div', { class: 'govuk-form-group' },
      el('label', { class: 'govuk-label', for: id + '-notes', text: 'Review notes' }),
      el('div', { class: 'govuk-hint', id: id + '-notes-hint', text: 'Why. Stored in the unlock service; the audit log keeps only its SHA-256.' }),
      el('textarea', { class: 'govuk-textarea', id: id + '-notes', name: 'notes', rows: '3', 'aria-describedby': id + '-notes-hint' })),
    el('button', { type: 'submit', class: 'govuk-button', 'data-module': 'govuk-button', text: 'Record the outcome' }))
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    const chosen = form.querySelector('input[type="radio"]:checked')
    const notes = form.querySelector('textarea').value.trim()
    const missing = []
    if (!chosen) missing.push([id + '-outcome', 'Choose whether the break-glass use of ' + review.request_id + ' was justified'])
    if (!notes) missing.push([id + '-notes', 'Write review notes for ' + review.request_id])
    if (missing.length) return problems(missing)
    const answer = await call('POST', '/reviews/' + review.request_id, { outcome: chosen.value, notes })
    if (answer.status !== 200) return failed(answer, 'The review was not recorded')
    sessionStorage.setItem('fl-ig-flash', 'Review of ' + review.request_id + ' recorded (' +
      label(answer.body.outcome) + ') as audit log entry ' + answer.body.audit_index + '.')
    window.location.reload()
  })
  return form
}

async function reviewsPage () {
  const flash = sessionStorage.getItem('fl-ig-flash')
  if (flash) {
    sessionStorage.removeItem('fl-ig-flash')
    document.getElementById('flash').replaceChildren(
      el('div', { class: 'govuk-notification-banner govuk-notification-banner--success', role: 'alert' },
        el('div', { class: 'govuk-notification-banner__header' },
          el('h2', { class: 'govuk-notification-banner__title', text: 'Success' })),
        el('div', { class: 'govuk-notification-banner__content' },
          el('p', { class: 'govuk-notification-banner__heading', text: flash }))))
  }
  const open = await call('GET', '/reviews?status=open')
  if (open.status !== 200) return failed(open, 'The review tasks could not be listed')
  const closed = await call('GET', '/reviews?status=closed')
  if (closed.status !== 200) return failed(closed, 'The closed reviews could not be listed')
  const target = document.getElementById('open-reviews')
  const tasks = open.body.reviews
  target.replaceChildren(
    el('h2', { class: 'govuk-heading-m', text: 'To review (' + tasks.length + ')' }),
    tasks.length
      ? el('div', {}, tasks.map((r, n) => el('div', { class: 'govuk-summary-card' },
        el('div', { class: 'govuk-summary-card__title-wrapper' },
          el('h3', { class: 'govuk-summary-card__title' }, 'Break-glass ', mono(r.request_id), ' ', deadline(r))),
        el('div', { class: 'govuk-summary-card__content' },
          el('dl', { class: 'govuk-summary-list' },
            [['Professional', el('a', { class: 'govuk-link app-mono', href: '/audit?professional=' + r.professional_id, text: r.professional_id })],
              ['Family', el('a', { class: 'govuk-link app-mono', href: '/audit?family=' + r.family_id, text: r.family_id })],
              ['Purpose', label(r.purpose_code)],
              ['Used', when(r.opened_at)],
              ['Review due by', when(r.due_at)]].map(([k, v]) =>
              el('div', { class: 'govuk-summary-list__row' },
                el('dt', { class: 'govuk-summary-list__key', text: k }),
                el('dd', { class: 'govuk-summary-list__value' }, v)))),
          reviewForm(r, n)))))
      : el('p', { class: 'govuk-body', text: 'No break-glass use is waiting for review.' }))
  const done = closed.body.reviews
  document.getElementById('closed-reviews').replaceChildren(done.length
    ? table('Reviewed (' + done.length + ')', ['Request', 'Professional', 'Family', 'Outcome', 'Reviewer', 'Closed', 'Audit entry'],
      done.map((r) => [mono(r.request_id), mono(r.professional_id), mono(r.family_id),
        r.outcome === 'upheld' ? 'Upheld' : 'Not upheld', mono(r.reviewer_id), when(r.closed_at),
        r.audit_index === null ? '–' : el('a', { class: 'govuk-link', href: '/audit?start=' + r.audit_index, text: String(r.audit_index) })]))
    : el('p', { class: 'govuk-body', text: 'No review has been closed yet.' }))
}

function identityRows (identities) {
  return identities.map((i) => [
    label(i.agency_id), mono(i.record_ref),
    [i.given_names, i.family_name].filter(Boolean).join(' ') || '–',
    i.date_of_birth || '–',
    [...(i.address_lines || []), i.postcode].filter(Boolean).join(', ') || '–',
    [i.nhs_number && 'NHS ' + i.nhs_number, i.ni_number && 'NI ' + i.ni_number, i.upn && 'UPN ' + i.upn].filter(Boolean).join(', ') || '–'
  ])
}

async function showReport (report) {
  const out = document.getElementById('report')
  const held = report.held
  const records = held.persons.flatMap((p) => p.records.map((r) => [p, r]))
  let identities = []
  if (report.sealed_identities) {
    const opened = await openSealed(report.sealed_identities)
    if (opened.query_sha256 !== report.query_sha256) throw new Error('The identities are not the ones for this search')
    identities = opened.identities
  }
  const download = el('a', { class: 'govuk-button govuk-button--secondary', role: 'button', download: 'subject-access-' + report.audit_index + '.json', text: 'Download the report with identities (JSON)' })
  download.href = URL.createObjectURL(new Blob([JSON.stringify({ ...report, sealed_identities: undefined, identities }, null, 2)], { type: 'application/json' }))
  out.replaceChildren(
    el('h2', { class: 'govuk-heading-l', text: 'What is held' }),
    el('dl', { class: 'govuk-summary-list' },
      [['Searched', when(report.generated_at)], ['Audit log entry', String(report.audit_index)],
        ['Query (SHA-256)', mono(report.query_sha256)], ['Records matched', String(records.length)],
        ['Families', String(held.families.length)], ['Unlock requests', String(report.unlocks.length)]].map(([k, v]) =>
        el('div', { class: 'govuk-summary-list__row' },
          el('dt', { class: 'govuk-summary-list__key', text: k }),
          el('dd', { class: 'govuk-summary-list__value' }, v)))),
    download,
    identities.length
      ? table('Identities the agencies hold (opened in this browser with your key)', ['Agency', 'Record', 'Name', 'Date of birth', 'Address', 'Numbers'], identityRows(identities))
      : el('p', { class: 'govuk-body', text: 'No identity is held for this query.' }),
    records.length
      ? table('Records', ['Agency', 'Record', 'Person', 'Match', 'Age', 'Sex', 'Area', 'Indicators', 'Held'],
        records.map(([p, r]) => [label(r.agency_id), mono(r.record_ref), mono(p.person_id), Math.round(r.match * 100) + '%',
          r.age === null ? '–' : String(r.age), r.sex || '–', r.postcode_district || '–', String(r.indicators.length),
          r.retired_by ? 'Retired: no longer sent by the agency, still held' : 'Live']), [3, 4, 7])
      : el('p', { class: 'govuk-body', text: 'No record matched.' }),
    held.families.length
      ? table('Families', ['Family', 'Members', 'Status', 'Latest score', 'Assessments', 'Claims'],
        held.families.map((f) => [mono(f.family_id), String(f.members), label(f.status),
          f.assessments.length ? String(f.assessments[f.assessments.length - 1].score) : '–',
          String(f.assessments.length), String(f.claims.length)]), [1, 3, 4, 5])
      : '',
    report.unlocks.length
      ? table('Unlock requests for these families', ['Request', 'Professional', 'Family', 'Purpose', 'Status', 'Asked'],
        report.unlocks.map((u) => [mono(u.request_id), mono(u.professional_id), mono(u.family_id), label(u.purpose_code),
          statusText(u.status) + (u.break_glass ? ' (break-glass)' : ''), when(u.created_at)]))
      : el('p', { class: 'govuk-body', text: 'Nobody has asked for these families.' }))
}

async function subjectAccessPage () {
  const form = document.getElementById('subject-form')
  form.hidden = false
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    const file = form.querySelector('#query-file').files[0]
    if (!file) return problems([['query-file', 'Choose the subject query file (query.json)']])
    if (file.size > 1024 * 1024) return problems([['query-file', 'The query file must be smaller than 1 MB']])
    let query
    try {
      query = JSON.parse(await file.text())
    } catch (e) {
      return problems([['query-file', 'The query file is not JSON: make it with agency-client subject-query']])
    }
    const answer = await call('POST', '/subject-access', query)
    if (answer.status !== 200) return failed(answer, 'The search was refused')
    errors.replaceChildren()
    await showReport(answer.body)
  })
}

const PAGES = { reviews: reviewsPage, 'subject-access': subjectAccessPage }
keyPanel(document.getElementById('key-panel'), () => {
  PAGES[page.dataset.page]().catch((e) => showError(errors, 'Something went wrong', e.message))
})
