/* The consent page's only script: fill the proof of who decides from the URL fragment.
 *
 * "#approval=CODE" fills the approval code field and "#session=TOKEN" the principal session.
 * A fragment never reaches the server, so neither secret lands in an access log; once read it
 * is removed from the address bar and the history entry. Without JavaScript the person types
 * the code (the page says where to find it).
 */
(function () {
  "use strict";
  var fragment = window.location.hash.replace(/^#/, "");
  if (!fragment) {
    return;
  }
  var params = new URLSearchParams(fragment);
  var code = params.get("approval");
  var session = params.get("session");
  var codeField = document.getElementById("approval_code");
  var sessionField = document.getElementById("session_token");
  if (code && codeField && !codeField.value) {
    codeField.value = code;
  }
  if (session && sessionField) {
    sessionField.value = session;
    var note = document.getElementById("session-note");
    if (note) {
      note.hidden = false;
    }
  }
  if ((code || session) && window.history && window.history.replaceState) {
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
  }
})();
