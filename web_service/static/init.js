// GOV.UK Frontend's components (no inline script: the CSP allows only this origin).
import { initAll } from '/static/vendor/govuk/govuk-frontend.min.js'
initAll()

// Signing out forgets the professional's key and token held in this tab.
const signOut = document.querySelector('form[action="/sign-out"]')
if (signOut) signOut.addEventListener('submit', () => sessionStorage.clear())
