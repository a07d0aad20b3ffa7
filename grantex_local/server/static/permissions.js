/* The permissions page: list the principal's grants and revoke them.
 *
 * The session token comes from "#session=" (or "?session="); it is taken out of the address bar
 * at once and kept only in this closure: never written back into a URL, never in localStorage
 * or a cookie. Every call sends it as "Authorization: Bearer", which a cross-site page cannot
 * set. All text from the server goes in with textContent, never as HTML.
 */
(function () {
  "use strict";

  var token = null;
  var lastTrigger = null;
  var pending = null;

  function $(id) { return document.getElementById(id); }

  function readToken() {
    var fromHash = new URLSearchParams(window.location.hash.replace(/^#/, "")).get("session");
    var query = new URLSearchParams(window.location.search);
    var found = fromHash || query.get("session");
    if (found && window.history && window.history.replaceState) {
      query.delete("session");
      var rest = query.toString();
      window.history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : ""));
    }
    return found;
  }

  function show(id) {
    ["state-loading", "state-no-session", "state-expired", "state-error", "state-empty", "grants"]
      .forEach(function (name) { $(name).hidden = name !== id; });
  }

  function say(text, failed) {
    var status = $("status");
    status.textContent = text;
    status.classList.toggle("failed", !!failed);
    status.hidden = !text;
  }

  function call(method, path) {
    return fetch(path, {
      method: method, credentials: "omit", cache: "no-store",
      headers: { "Authorization": "Bearer " + token, "Accept": "application/json" }
    }).then(function (response) {
      if (response.status === 204) { return { status: 204, body: null }; }
      return response.json().catch(function () { return {}; }).then(function (body) {
        return { status: response.status, body: body };
      });
    });
  }

  function sessionProblem(answer) {
    if (answer.status !== 401) { return false; }
    var message = (answer.body && answer.body.message) || "";
    $("expired-title").textContent = /has expired/i.test(message)
      ? "Your session has expired." : "This link's session is not valid.";
    show("state-expired");
    $("principal-line").hidden = true;
    token = null;
    return true;
  }

  function when(stamp) {
    if (!stamp) { return null; }
    var date = new Date(stamp);
    if (isNaN(date.getTime())) { return stamp; }
    return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  function fact(list, label, value, className) {
    var row = el("div");
    row.appendChild(el("dt", null, label));
    row.appendChild(el("dd", className, value));
    list.appendChild(row);
  }

  function renderGrant(grant) {
    var item = el("li", "grant");
    item.setAttribute("data-grant-id", grant.grantId);
    var headingId = "grant-" + grant.grantId.replace(/[^A-Za-z0-9_-]/g, "_");
    var heading = el("h2", "agent-name", grant.agentName);
    heading.id = headingId;
    item.setAttribute("aria-labelledby", headingId);
    item.appendChild(heading);
    if (grant.agentDescription) { item.appendChild(el("p", "agent-description", grant.agentDescription)); }
    item.appendChild(el("p", "hint", "It may:"));
    var scopes = el("ul", "scopes");
    (grant.scopeDescriptions || []).forEach(function (scope) {
      var li = el("li", "scope", scope.description);
      li.setAttribute("data-scope", scope.scope);
      scopes.appendChild(li);
    });
    item.appendChild(scopes);
    var facts = el("dl", "facts");
    var chain = (grant.delegationChain || []).map(function (link) { return link.agentName; });
    fact(facts, "Given by", chain.length
      ? "You \u2192 " + chain.join(" \u2192 ") + " \u2192 " + grant.agentName + " (passed on)"
      : "You, directly", "chain");
    fact(facts, "Given on", when(grant.issuedAt), "issued");
    fact(facts, "Expires", when(grant.expiresAt), "expires");
    fact(facts, "Last used", grant.lastActivity ? when(grant.lastActivity) : "No activity yet", "last-activity");
    if (grant.descendants) {
      fact(facts, "Passed on", grant.descendants === 1 ? "1 grant depends on it"
        : grant.descendants + " grants depend on it", "descendants");
    }
    item.appendChild(facts);
    var button = el("button", "button deny revoke", "Revoke access");
    button.type = "button";
    button.setAttribute("data-grant-id", grant.grantId);
    button.setAttribute("aria-label", "Revoke access for " + grant.agentName);
    button.addEventListener("click", function () { askToRevoke(grant, button); });
    item.appendChild(button);
    return item;
  }

  function load() {
    show("state-loading");
    return call("GET", "/v1/principal/grants").then(function (answer) {
      if (sessionProblem(answer)) { return; }
      if (answer.status !== 200) {
        $("error-text").textContent = "Your grants could not be loaded: " +
          ((answer.body && answer.body.message) || ("HTTP " + answer.status));
        show("state-error");
        return;
      }
      $("principal-name").textContent = answer.body.principalId;
      $("principal-line").hidden = false;
      var list = $("grants");
      list.textContent = "";
      answer.body.grants.forEach(function (grant) { list.appendChild(renderGrant(grant)); });
      show(answer.body.grants.length ? "grants" : "state-empty");
    }).catch(function () {
      $("error-text").textContent = "The server could not be reached. Is grantex-local serve running?";
      show("state-error");
    });
  }

  function askToRevoke(grant, button) {
    lastTrigger = button;
    button.disabled = true;
    call("GET", "/v1/principal/grants/" + encodeURIComponent(grant.grantId) + "/blast-radius")
      .then(function (answer) {
        button.disabled = false;
        if (sessionProblem(answer)) { return; }
        if (answer.status !== 200) {
          say("This grant is no longer active; the list was refreshed.", true);
          return load();
        }
        var below = answer.body.below || [];
        pending = grant;
        $("confirm-title").textContent = "Revoke access for " + grant.agentName + "?";
        $("confirm-text").textContent = below.length
          ? grant.agentName + " passed this access on. Revoking it also revokes these " + below.length +
            " grant" + (below.length === 1 ? "" : "s") + ":"
          : "No other grant depends on it. " + grant.agentName + " loses this access at once.";
        var list = $("confirm-below");
        list.textContent = "";
        below.forEach(function (child) {
          var li = el("li", "below-grant", child.agentName);
          li.setAttribute("data-grant-id", child.grantId);
          list.appendChild(li);
        });
        list.hidden = !below.length;
        $("confirm-revoke").textContent = below.length
          ? "Revoke " + (below.length + 1) + " grants" : "Revoke access";
        var dialog = $("confirm");
        dialog.showModal();
        $("confirm-cancel").focus();
      }).catch(function () {
        button.disabled = false;
        say("The server could not be reached; nothing was revoked.", true);
      });
  }

  function closeDialog() {
    var dialog = $("confirm");
    if (dialog.open) { dialog.close(); }
  }

  function cancel() {
    pending = null;
    closeDialog();
    if (lastTrigger && document.body.contains(lastTrigger)) { lastTrigger.focus(); }
  }

  function confirmRevoke() {
    if (!pending) { return; }
    var grant = pending;
    var button = $("confirm-revoke");
    button.disabled = true;
    call("DELETE", "/v1/principal/grants/" + encodeURIComponent(grant.grantId)).then(function (answer) {
      button.disabled = false;
      pending = null;
      closeDialog();
      if (sessionProblem(answer)) { return; }
      if (answer.status === 204) {
        say("Access revoked: " + grant.agentName + " (and every grant passed on from it) can no longer act for you.");
      } else {
        say("Nothing was revoked: " + ((answer.body && answer.body.message) || ("HTTP " + answer.status)), true);
      }
      return load().then(function () { $("status").focus(); });
    }).catch(function () {
      button.disabled = false;
      say("The server could not be reached; nothing was revoked.", true);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("confirm-cancel").addEventListener("click", cancel);
    $("confirm-revoke").addEventListener("click", confirmRevoke);
    $("confirm").addEventListener("cancel", function (event) { event.preventDefault(); cancel(); });
    // A second link opened in the same tab changes only the fragment, which reloads nothing.
    window.addEventListener("hashchange", function () {
      var fresh = readToken();
      if (fresh) { token = fresh; pending = null; closeDialog(); say(""); load(); }
    });
    token = readToken();
    if (!token) { show("state-no-session"); return; }
    load();
  });
})();
