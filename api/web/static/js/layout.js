// What every signed-in page does first: send strangers to sign in, wire "Sign out",
// show a message left by the previous page.
import { requireKey, signOut, takeFlash } from "./api.js";
import { showMessage } from "./dom.js";

/** Returns false when the visitor is being sent to the sign-in page. */
export function startPage() {
  if (!requireKey()) return false;
  document.getElementById("sign-out")?.addEventListener("click", signOut);
  const flash = takeFlash();
  if (flash) showMessage(flash.text, flash.kind);
  return true;
}
