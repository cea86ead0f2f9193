// GOV.UK Frontend's components (no inline script: the CSP allows only this origin).
import { initAll } from '/static/vendor/govuk/govuk-frontend.min.js'
initAll()
