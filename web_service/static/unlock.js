// The professional's side of the unlock service, in the browser.
//
// The professional's key file (family-linkage/professional-key/v1: an Ed25519
// seed) and JWT are loaded from their own files into this tab's sessionStorage
// and never sent anywhere. Every unlock-service request is signed here, as
// unlock_service/_auth.py request_message() defines, and sent through the web
// service's relay, which forwards it unchanged; releases come back sealed to the
// professional's key and are opened here (crypto_box_seal_open), so no server
// ever holds a plaintext identity. libsodium (libsodium-wrappers from npm) does
// the cryptography; SHA-256 comes from WebCrypto.

const KEY = 'fl-professional-seed'
const TOKEN = 'fl-professional-token'
const CONTEXT = 'unlock-service request signature v1\n'
const KEY_FORMAT = 'family-linkage/professional-key/v1'

export async function sodium () {
  await window.sodium.ready
  return window.sodium
}

function b64decode (text) {
  const raw = atob(text)
  const out = new Uint8Array(raw.length)
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i)
  return out
}

function b64encode (bytes) {
  let raw = ''
  for (const b of bytes) raw += String.fromCharCode(b)
  return btoa(raw)
}

function hex (bytes) {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, '0')).join('')
}

async function sha256hex (bytes) {
  return hex(await crypto.subtle.digest('SHA-256', bytes))
}

function jwtSubject (token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')
    return JSON.parse(atob(part + '='.repeat((4 - part.length % 4) % 4))).sub
  } catch (e) {
    return null
  }
}

export function jwtExpiry (token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')
    return new Date(JSON.parse(atob(part + '='.repeat((4 - part.length % 4) % 4))).exp * 1000)
  } catch (e) {
    return null
  }
}

export function loaded () {
  const token = sessionStorage.getItem(TOKEN)
  const expiry = token ? jwtExpiry(token) : null
  return Boolean(sessionStorage.getItem(KEY) && token && expiry && expiry > new Date())
}

export function forget () {
  sessionStorage.removeItem(KEY)
  sessionStorage.removeItem(TOKEN)
}

// Read the key file and the token file; refuse what is not theirs.
export async function load (keyFile, tokenFile, professionalId) {
  const s = await sodium()
  let data
  try {
    data = JSON.parse(await keyFile.text())
  } catch (e) {
    throw new Error('The key file is not a professional key file (it is not JSON)')
  }
  if (data.format !== KEY_FORMAT || typeof data.signing_seed !== 'string') {
    throw new Error('The key file is not a professional key file (' + KEY_FORMAT + ')')
  }
  const seed = b64decode(data.signing_seed)
  if (seed.length !== 32) throw new Error('The key file holds no 32-byte key')
  const pair = s.crypto_sign_seed_keypair(seed)
  if (data.public_key && b64encode(pair.publicKey) !== data.public_key) {
    throw new Error('The key file is damaged: its public key does not match its key')
  }
  const token = (await tokenFile.text()).trim()
  const sub = jwtSubject(token)
  if (!sub) throw new Error('The token file holds no token')
  if (sub !== professionalId) {
    throw new Error('The token is for ' + sub + ', not for you (' + professionalId + ')')
  }
  const expiry = jwtExpiry(token)
  if (!expiry || expiry <= new Date()) throw new Error('The token has expired: ask for a new one')
  sessionStorage.setItem(KEY, data.signing_seed)
  sessionStorage.setItem(TOKEN, token)
}

async function keyPair () {
  const s = await sodium()
  const seed = sessionStorage.getItem(KEY)
  if (!seed) throw new Error('Load your key and token first')
  return s.crypto_sign_seed_keypair(b64decode(seed))
}

// A signed request to the unlock service through the relay: {status, body}.
export async function call (method, target, body) {
  const s = await sodium()
  const token = sessionStorage.getItem(TOKEN)
  const pair = await keyPair()
  const bytes = body === undefined ? new Uint8Array(0) : new TextEncoder().encode(JSON.stringify(body))
  const t = Math.floor(Date.now() / 1000)
  const nonce = hex(s.randombytes_buf(16))
  const message = CONTEXT + [
    method.toUpperCase(), target, await sha256hex(bytes), String(t), nonce,
    await sha256hex(new TextEncoder().encode(token))
  ].join('\n')
  const signature = b64encode(s.crypto_sign_detached(new TextEncoder().encode(message), pair.privateKey))
  const headers = {
    Authorization: 'Bearer ' + token,
    'Unlock-Signature': 't=' + t + ',n=' + nonce + ',s=' + signature,
    'X-CSRF-Token': document.querySelector('meta[name="csrf-token"]').content
  }
  if (bytes.length) headers['Content-Type'] = 'application/json'
  const response = await fetch('/relay/unlock' + target, {
    method, headers, body: bytes.length ? bytes : undefined, credentials: 'same-origin'
  })
  let answer = null
  try { answer = await response.json() } catch (e) { answer = null }
  return { status: response.status, body: answer }
}

// Open a release sealed to this professional's key; the release JSON.
export async function openRelease (sealed, requestId) {
  const s = await sodium()
  const pair = await keyPair()
  const pk = s.crypto_sign_ed25519_pk_to_curve25519(pair.publicKey)
  const sk = s.crypto_sign_ed25519_sk_to_curve25519(pair.privateKey)
  let release
  try {
    release = JSON.parse(new TextDecoder().decode(s.crypto_box_seal_open(b64decode(sealed), pk, sk)))
  } catch (e) {
    throw new Error('The release does not open with your key')
  }
  if (release.request_id !== requestId) throw new Error('The release is not the one for ' + requestId)
  return release
}

// ---- page helpers: build GOV.UK markup with the DOM (never innerHTML with data)

export function el (tag, attrs, ...children) {
  const node = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue
    if (k === 'class') node.className = v
    else if (k === 'text') node.textContent = v
    else node.setAttribute(k, v === true ? '' : v)
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue
    node.append(child instanceof Node ? child : document.createTextNode(String(child)))
  }
  return node
}

export function when (iso) {
  if (!iso) return '–'
  const d = new Date(iso)
  return d.toLocaleString('en-GB', {
    day: 'numeric', month: 'long', year: 'numeric', hour: 'numeric', minute: '2-digit', timeZone: 'UTC'
  }) + ' UTC'
}

export function label (code) {
  const text = String(code || '').replace(/_/g, ' ').trim()
  return text ? text[0].toUpperCase() + text.slice(1) : '–'
}

// A request's status in words and its tag's colour: each status the unlock
// service answers with (protocols RequestStatus), including the transitional ones.
const STATUSES = {
  evaluating: ['Being decided', 'govuk-tag--grey'],
  pending: ['Waiting for approval', 'govuk-tag--yellow'],
  deciding: ['Approval being recorded', 'govuk-tag--yellow'],
  granted: ['Granted', 'govuk-tag--green'],
  releasing: ['Being released', 'govuk-tag--green'],
  released: ['Released', ''], // GOV.UK's default tag colour (blue)
  refused: ['Refused', 'govuk-tag--red'],
  expiring: ['Expiring', 'govuk-tag--grey'],
  expired: ['Expired', 'govuk-tag--grey'],
  audit_failed: ['Not recorded, nothing released', 'govuk-tag--red']
}

export function statusText (status) {
  return (STATUSES[status] || [label(status)])[0]
}

export function tag (status) {
  const colour = (STATUSES[status] || [null, 'govuk-tag--grey'])[1]
  return el('strong', { class: ('govuk-tag ' + colour).trim() }, statusText(status))
}

// The times of a request (a RequestView), each labelled for what it is in the
// request's status: expires_at is the end of the approval wait while a request
// is pending, and the grant's expiry once granted; a release has its own time.
// [label, text] rows, oldest first.
export function requestTimes (r, now = new Date()) {
  const rows = [['Asked', when(r.created_at)]]
  const passed = Boolean(r.expires_at) && new Date(r.expires_at) <= now
  const granted = Boolean(r.decided_at) && ['granted', 'releasing', 'released', 'expiring', 'expired'].includes(r.status)
  const wasGranted = r.status === 'refused' && r.decided_at && r.expires_at // a flag stopped its grant
  if (granted || wasGranted) rows.push(['Granted', when(r.decided_at)])
  switch (r.status) {
    case 'pending':
    case 'deciding':
      rows.push([passed ? 'Approval wait ended' : 'Waiting for approval until', when(r.expires_at)])
      break
    case 'granted':
    case 'releasing':
      rows.push([passed ? 'Grant expired' : 'Grant expires', when(r.expires_at)])
      break
    case 'released':
      rows.push(['Released', when(r.released_at)])
      break
    case 'refused':
      if (wasGranted) rows.push(['Released', 'No: the grant was stopped before release'])
      else if (r.decided_at) rows.push(['Refused', when(r.decided_at)])
      break
    case 'expiring':
    case 'expired':
      if (!r.decided_at && r.expires_at) rows.push(['Approval wait ended', when(r.expires_at)])
      else if (r.reason === 'GRANT_EXPIRED' || (r.status === 'expiring' && r.expires_at)) rows.push(['Grant expired', when(r.expires_at)])
      else rows.push(['Released', 'No: the grant was closed unused'])
      break
    case 'audit_failed':
      rows.push(['Released', 'No'])
      break
  }
  return rows
}

export function showError (container, title, message) {
  container.replaceChildren(
    el('div', { class: 'govuk-error-summary', 'data-module': 'govuk-error-summary', role: 'alert', tabindex: '-1' },
      el('div', { role: 'alert' },
        el('h2', { class: 'govuk-error-summary__title', text: title }),
        el('div', { class: 'govuk-error-summary__body' }, el('p', { class: 'govuk-body', text: message }))))
  )
  container.querySelector('.govuk-error-summary').focus()
}

// The key panel of every professional page: load the files, or say they are loaded.
export function keyPanel (panel, onReady) {
  const professionalId = document.body.dataset.professionalId
  const ready = () => {
    const expiry = jwtExpiry(sessionStorage.getItem(TOKEN))
    panel.replaceChildren(
      el('p', { class: 'govuk-body' },
        'Your key and token are loaded in this browser tab (the token is valid until ' +
        when(expiry && expiry.toISOString()) + '). ',
        el('button', { type: 'button', class: 'govuk-button govuk-button--secondary govuk-!-margin-bottom-0', id: 'forget-key', text: 'Forget them' }))
    )
    panel.querySelector('#forget-key').addEventListener('click', () => { forget(); window.location.reload() })
    onReady()
  }
  if (loaded()) { ready(); return }
  const form = panel.querySelector('form')
  panel.hidden = false
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    const errors = panel.querySelector('.app-key-errors')
    try {
      const keyFile = form.querySelector('#key-file').files[0]
      const tokenFile = form.querySelector('#token-file').files[0]
      if (!keyFile || !tokenFile) throw new Error('Choose your key file and your token file')
      await load(keyFile, tokenFile, professionalId)
      ready()
    } catch (e) {
      showError(errors, 'Your key was not loaded', e.message)
    }
  })
}

// Open any box sealed to this professional's key (a subject access report's
// identities); the parsed JSON. The caller checks what it holds.
export async function openSealed (sealed) {
  const s = await sodium()
  const pair = await keyPair()
  const pk = s.crypto_sign_ed25519_pk_to_curve25519(pair.publicKey)
  const sk = s.crypto_sign_ed25519_sk_to_curve25519(pair.privateKey)
  try {
    return JSON.parse(new TextDecoder().decode(s.crypto_box_seal_open(b64decode(sealed), pk, sk)))
  } catch (e) {
    throw new Error('The sealed identities do not open with your key')
  }
}
