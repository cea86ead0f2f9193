// The professional's pages: each one's behaviour, over unlock.js.
import { call, el, keyPanel, label, openRelease, requestTimes, showError, tag, when } from '/static/unlock.js'

const page = document.getElementById('page')
const errors = page.querySelector('.app-errors')
const RELEASES = 'fl-release-'

function failed (answer, what) {
  const body = answer.body || {}
  const text = body.reason_text || (typeof body.detail === 'string' ? body.detail : null) ||
    'The unlock service answered ' + answer.status
  showError(errors, what, text)
}

function table (caption, headings, rows) {
  return el('table', { class: 'govuk-table' },
    el('caption', { class: 'govuk-table__caption govuk-table__caption--m', text: caption }),
    el('thead', { class: 'govuk-table__head' },
      el('tr', { class: 'govuk-table__row' },
        headings.map((h) => el('th', { scope: 'col', class: 'govuk-table__header', text: h })))),
    el('tbody', { class: 'govuk-table__body' },
      rows.map((cells) => el('tr', { class: 'govuk-table__row' },
        cells.map((c) => el('td', { class: 'govuk-table__cell' }, c))))))
}

function summary (rows) {
  return el('dl', { class: 'govuk-summary-list' },
    rows.filter(([, v]) => v !== null && v !== undefined && v !== '').map(([k, v]) =>
      el('div', { class: 'govuk-summary-list__row' },
        el('dt', { class: 'govuk-summary-list__key', text: k }),
        el('dd', { class: 'govuk-summary-list__value' }, v))))
}

async function requestsPage () {
  const answer = await call('GET', '/unlocks')
  const target = document.getElementById('requests')
  if (answer.status !== 200) return failed(answer, 'Your requests could not be listed')
  const rows = answer.body.requests.map((r) => [
    el('a', { class: 'govuk-link app-mono', href: '/requests/' + r.request_id, text: r.request_id }),
    el('span', { class: 'app-mono', text: r.family_id }),
    label(r.purpose_code),
    tag(r.status),
    r.reason_text,
    when(r.created_at)
  ])
  target.replaceChildren(rows.length
    ? table('Newest first', ['Request', 'Family', 'Purpose', 'Status', 'Why', 'Asked'], rows)
    : el('p', { class: 'govuk-body', text: 'You have not asked for any family yet.' }))
}

async function newPage () {
  const form = document.getElementById('unlock-form')
  const purposes = await call('GET', '/purposes')
  if (purposes.status !== 200) return failed(purposes, 'The purposes could not be read')
  const radios = document.getElementById('purposes')
  const breakGlass = new Set()
  radios.replaceChildren(...purposes.body.purposes.map((p, i) => {
    if (p.break_glass) breakGlass.add(p.code)
    return el('div', { class: 'govuk-radios__item' },
      el('input', { class: 'govuk-radios__input', id: i ? 'purpose-' + i : 'purpose', name: 'purpose', type: 'radio', value: p.code }),
      el('label', { class: 'govuk-label govuk-radios__label', for: i ? 'purpose-' + i : 'purpose' },
        p.description + (p.approval ? ' (needs a second professional\'s approval)' : '')))
  }))
  form.hidden = false
  radios.addEventListener('change', () => {
    const chosen = form.querySelector('input[name="purpose"]:checked')
    document.getElementById('break-glass').hidden = !(chosen && breakGlass.has(chosen.value))
  })
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    const chosen = form.querySelector('input[name="purpose"]:checked')
    const family = form.querySelector('#family-id').value.trim()
    const justification = form.querySelector('#justification').value.trim()
    const problems = []
    if (!/^fam_[0-9a-f]{16,64}$/.test(family)) problems.push(['family-id', 'Enter a family id: fam_ and 16 or more hex digits'])
    if (!chosen) problems.push(['purpose', 'Choose the purpose'])
    if (justification.length < 20) problems.push(['justification', 'Write a justification of at least 20 characters'])
    const glass = Boolean(chosen && breakGlass.has(chosen.value))
    if (glass && !form.querySelector('#break-glass-confirm').checked) problems.push(['break-glass-confirm', 'Confirm the immediate risk to use break-glass'])
    if (problems.length) {
      errors.replaceChildren(el('div', { class: 'govuk-error-summary', role: 'alert', tabindex: '-1' },
        el('h2', { class: 'govuk-error-summary__title', text: 'There is a problem' }),
        el('div', { class: 'govuk-error-summary__body' },
          el('ul', { class: 'govuk-list govuk-error-summary__list' },
            problems.map(([id, text]) => el('li', {}, el('a', { href: '#' + id, text })))))))
      errors.firstChild.focus()
      return
    }
    const answer = await call('POST', '/unlocks', {
      family_id: family, purpose_code: chosen.value, justification, break_glass: glass
    })
    if (answer.status === 200) {
      sessionStorage.setItem(RELEASES + answer.body.request_id, JSON.stringify(answer.body))
      window.location.assign('/requests/' + answer.body.request_id)
    } else if (answer.status === 202) {
      window.location.assign('/requests/' + answer.body.request_id)
    } else {
      failed(answer, 'Your request was refused')
      if (answer.body && answer.body.request_id) {
        errors.querySelector('.govuk-error-summary__body').append(
          el('p', { class: 'govuk-body' }, 'It is recorded as ',
            el('a', { class: 'govuk-link', href: '/requests/' + answer.body.request_id, text: answer.body.request_id }),
            ' in the audit log (entry ' + answer.body.audit_index + ').'))
      }
    }
  })
}

// dwp -> DWP, early_help -> Early help
function agency (id) {
  return id.length <= 3 ? id.toUpperCase() : label(id)
}

function person (index, p, records) {
  const ids = records.map((r) => r.identity)
  const uniq = (values) => [...new Set(values.filter(Boolean))]
  const names = uniq(ids.map((i) => [i.given_names, i.family_name].filter(Boolean).join(' ')))
  const addresses = uniq(ids.map((i) => [...(i.address_lines || []), i.postcode].filter(Boolean).join(', ')))
  const numbers = uniq(ids.flatMap((i) => [
    i.nhs_number && 'NHS ' + i.nhs_number, i.ni_number && 'NI ' + i.ni_number, i.upn && 'UPN ' + i.upn,
    ...Object.entries(i.local_identifiers || {}).map(([k, v]) => k + ' ' + v)]))
  const knownTo = el('ul', { class: 'govuk-list' },
    p.records.map((r) => el('li', {}, agency(r.agency_id) + ' (record ', el('span', { class: 'app-mono', text: r.record_ref }), ')')))
  return el('div', { class: 'govuk-summary-card' },
    el('div', { class: 'govuk-summary-card__title-wrapper' },
      el('h3', { class: 'govuk-summary-card__title', text: (names[0] || 'Person ' + index) })),
    el('div', { class: 'govuk-summary-card__content' }, summary([
      ['Names recorded', names.join('; ')],
      ['Date of birth', uniq(ids.map((i) => i.date_of_birth)).join('; ')],
      ['Sex', uniq(ids.map((i) => i.sex)).join('; ')],
      ['Addresses', addresses.join('; ')],
      ['Identifiers', numbers.join('; ')],
      ['Known to', knownTo],
      ['Person id', el('span', { class: 'app-mono', text: p.person_id })]
    ])))
}

// The release as the unlock service answered it, identities still sealed to the
// professional's key (the same answer, kept in this tab: downloading it asks the
// service for nothing), and the receipt of the decision.
function saved (answer) {
  const name = 'release-' + answer.request_id + '.json'
  const sealed = new Blob([JSON.stringify(answer, null, 2)], { type: 'application/json' })
  const receipt = new Blob([answer.receipt], { type: 'text/plain' })
  return [
    el('h2', { class: 'govuk-heading-m', text: 'Receipt' }),
    el('p', { class: 'govuk-body', text: 'Audit log entry ' + answer.audit_index + '. An information governance officer can verify this receipt against the published log.' }),
    el('pre', { class: 'app-mono govuk-body-s', id: 'receipt', text: answer.receipt }),
    el('p', { class: 'govuk-body' }, 'The sealed release opens only with your key. To open it again outside this browser: ',
      el('code', { class: 'app-mono', text: 'unlock-service open-release --key your.key --answer ' + name })),
    el('div', { class: 'govuk-button-group' },
      el('a', { class: 'govuk-button govuk-button--secondary', href: URL.createObjectURL(sealed), download: name, text: 'Download the sealed release' }),
      el('a', { class: 'govuk-button govuk-button--secondary', href: URL.createObjectURL(receipt), download: 'receipt-' + answer.request_id + '.txt', text: 'Download the receipt' }))
  ]
}

async function showRelease (answer) {
  const target = document.getElementById('release')
  let release
  try {
    release = await openRelease(answer.sealed_identities, answer.request_id)
  } catch (e) {
    target.replaceChildren(...saved(answer))
    showError(errors, 'The identities did not open in this browser', e.message +
      '. They were released to you and are kept sealed: download the sealed release and open it with your key.')
    return
  }
  const people = release.people || []
  const byPerson = {}
  for (const r of release.records || []) (byPerson[r.person_id] = byPerson[r.person_id] || []).push(r)
  target.replaceChildren(
    el('h2', { class: 'govuk-heading-m', text: people.length + ' people in family ' + release.family_id }),
    el('p', { class: 'govuk-body', text: answer.identity_count + ' agency records, opened in this browser with your key. Nothing here was sent to any server in the clear.' }),
    ...people.map((p, i) => person(i + 1, p, byPerson[p.person_id] || [])),
    ...saved(answer)
  )
}

function requestSummary (r) {
  return summary([
    ['Status', tag(r.status)],
    ['Why', r.reason_text],
    ['Family', el('span', { class: 'app-mono', text: r.family_id })],
    ['Purpose', label(r.purpose_code)],
    ['Break-glass', r.break_glass ? 'Yes: information governance will review it' : 'No'],
    ...requestTimes(r)
  ])
}

async function requestPage () {
  const id = page.dataset.requestId
  const decision = document.getElementById('decision')
  const kept = sessionStorage.getItem(RELEASES + id)
  const state = await call('GET', '/unlocks/' + id)
  if (state.status !== 200) return failed(state, 'The request could not be read')
  if (kept) {
    decision.replaceChildren(requestSummary(state.body))
    return showRelease(JSON.parse(kept))
  }
  showDecision(state.body)
}

// The request's summary and, while it is granted, the button that redeems it.
function showDecision (r) {
  const decision = document.getElementById('decision')
  decision.replaceChildren(requestSummary(r))
  if (r.status === 'granted') {
    const button = el('button', { type: 'button', class: 'govuk-button', id: 'open', text: 'Release and open the identities' })
    decision.append(el('p', { class: 'govuk-body', text: 'The identities are released once. This tab keeps them, and you can download them still sealed to your key.' }), button)
    button.addEventListener('click', async () => {
      button.disabled = true
      const answer = await call('POST', '/unlocks/' + r.request_id + '/release')
      if (answer.status !== 200) {
        failed(answer, 'The identities were not released')
        // say where the request stands now (it may have expired or been stopped)
        const now = await call('GET', '/unlocks/' + r.request_id)
        if (now.status === 200) showDecision(now.body)
        else button.disabled = false
        return
      }
      sessionStorage.setItem(RELEASES + r.request_id, JSON.stringify(answer.body))
      // the answer is the service's word that it is released, and when
      decision.replaceChildren(requestSummary({ ...r, status: 'released', released_at: answer.body.released_at }))
      await showRelease(answer.body)
    })
  } else if (r.status === 'released') {
    decision.append(el('p', { class: 'govuk-body', text: 'The identities were released to you earlier, in another browser tab or from the command line; the service releases them once. A sealed release you downloaded opens with unlock-service open-release.' }))
  }
}

async function approvalsPage () {
  const target = document.getElementById('approvals')
  const answer = await call('GET', '/approvals')
  if (answer.status !== 200) return failed(answer, 'The approvals could not be listed')
  const items = answer.body.approvals
  if (!items.length) {
    target.replaceChildren(el('p', { class: 'govuk-body', text: 'Nothing is waiting for your approval.' }))
    return
  }
  target.replaceChildren(...items.map((a) => {
    const card = el('div', { class: 'govuk-summary-card' },
      el('div', { class: 'govuk-summary-card__title-wrapper' },
        el('h2', { class: 'govuk-summary-card__title app-mono', text: a.request_id })),
      el('div', { class: 'govuk-summary-card__content' },
        summary([
          ['Family', el('span', { class: 'app-mono', text: a.family_id })],
          ['Asked by', el('span', {}, el('span', { class: 'app-mono', text: a.requester_id }), ' (' + label(a.requester_role) + ')')],
          ['Purpose', a.purpose],
          ['Justification', a.justification || '–'],
          ['Approvals', a.approvals + ' of ' + a.approvals_required],
          ['Asked', when(a.created_at)],
          ['Approve by', when(a.expires_at)]
        ]),
        el('div', { class: 'govuk-button-group' },
          el('button', { type: 'button', class: 'govuk-button', 'data-decision': 'approve', text: 'Approve' }),
          el('button', { type: 'button', class: 'govuk-button govuk-button--warning', 'data-decision': 'decline', text: 'Decline' }))))
    card.querySelectorAll('button').forEach((b) => b.addEventListener('click', async () => {
      const decision = b.dataset.decision
      const result = await call('POST', '/unlocks/' + a.request_id + '/approvals', { decision })
      if (result.status !== 200) return failed(result, 'Your decision was not recorded')
      card.replaceChildren(el('div', { class: 'govuk-summary-card__content' },
        el('p', { class: 'govuk-body' }, (decision === 'approve' ? 'Approved: ' : 'Declined: ') + a.request_id + '. ', result.body.reason_text)))
    }))
    return card
  }))
}

const PAGES = { requests: requestsPage, new: newPage, request: requestPage, approvals: approvalsPage }

keyPanel(document.getElementById('key-panel'), () => {
  PAGES[page.dataset.page]().catch((e) => showError(errors, 'Something went wrong', e.message))
})
