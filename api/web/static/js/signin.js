// Sign in: check the key against the API before keeping it for the session.
import { ApiError, apiFetch, setKey, takeFlash, takeNext } from "./api.js";
import { showMessage } from "./dom.js";

const form = document.getElementById("signin-form");
const input = document.getElementById("api-key");
const error = document.getElementById("api-key-error");

function fieldError(text) {
  error.textContent = text;
  error.hidden = !text;
  input.setAttribute("aria-invalid", text ? "true" : "false");
  if (text) input.focus();
}

const flash = takeFlash();
if (flash) showMessage(flash.text, flash.kind);

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = input.value.trim();
  if (!key) {
    fieldError("Enter your lab's API key.");
    return;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  fieldError("");
  try {
    await apiFetch("/batches?per_page=1", { key });
    setKey(key);
    location.assign(takeNext());
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      fieldError("This key was not accepted. Check it (keys are case-sensitive) or ask for a new one.");
    } else {
      fieldError(`Could not sign in: ${err.message}`);
    }
  } finally {
    button.disabled = false;
  }
});
