// douyin club — the few actions a page offers: account, upload with progress, delete, comment.
// Viewing never needs this file. Every call goes through the site's own `/api` and `/upload`,
// so the session cookie (HttpOnly) is never visible here; only a direct upload's file goes
// elsewhere, to the object store, with the form the site's ticket gave.
"use strict";

(function () {
  // API.md's error codes in words a visitor understands; the api's message is the fallback.
  var FRIENDLY = {
    "001": "Please check what you entered.",
    "002": "Please sign in again — wrong name or password, or your session expired.",
    "003": "Our database is having trouble. Please try again in a moment.",
    "004": "Something went wrong on our side. Please try again.",
    "005": "You are not allowed to do that.",
    "006": "It is gone — it may have been deleted.",
    "007": "That is taken already — try another name.",
    "008": "That is too large.",
    "009": "That file is not a video we recognise (MP4, WebM, MOV or MKV).",
    "010": "Too many requests — please wait a few seconds and try again.",
    "011": "The site is busy right now. Please try again shortly."
  };
  // After a refused upload: the record exists, without its file.
  var PENDING = " The video stays pending; you can delete it and try again.";

  function me() { return document.body.getAttribute("data-user"); }
  // User text inside a sentence of ours, isolated for bidi (FSI … PDI), as the pages' <bdi> is.
  function isolate(s) { return "\u2068" + s + "\u2069"; }
  function seg(s) { return encodeURIComponent(s); }

  function message(status, body) {
    if (body && body.error_code) {
      var friendly = FRIENDLY[body.error_code] || "Something went wrong.";
      // Validation messages name the field, which helps more than the generic line.
      return body.error_code === "001" && body.error ? friendly + " (" + body.error + ")" : friendly;
    }
    if (status === 0) return "Cannot reach the site. Check your connection.";
    return "Something went wrong (" + status + ").";
  }

  function showError(form, text) {
    var slot = form && form.querySelector(".alert");
    if (slot) { slot.textContent = text; slot.classList.remove("ok"); slot.hidden = false; slot.focus && slot.focus(); }
    else { window.alert(text); }
  }

  function clearError(form) {
    var slot = form && form.querySelector(".alert");
    if (slot) { slot.hidden = true; slot.textContent = ""; }
  }

  function json(text) {
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  // Reads a JSON answer (or none) as {status, body}; a network failure is status 0.
  function answer(promise) {
    return promise.then(function (res) {
      return res.text().then(function (t) { return { status: res.status, body: json(t) }; });
    }, function () { return { status: 0, body: null }; });
  }

  // One call through the site's `/api` forwarding; resolves to {status, body}.
  function api(method, url, reqBody) {
    var payload = { url: url, method: method };
    if (reqBody !== undefined) payload.req_body = reqBody;
    return answer(fetch("/api", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify(payload)
    }));
  }

  function ok(r) { return r.status >= 200 && r.status < 300; }

  function busy(form, on) {
    var b = form.querySelector("button[type=submit]");
    if (b) b.disabled = on;
  }

  function onSubmit(action, handler) {
    document.querySelectorAll('form[data-action="' + action + '"]').forEach(function (form) {
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        clearError(form);
        busy(form, true);
        handler(form).then(function () { busy(form, false); }, function () { busy(form, false); });
      });
    });
  }

  onSubmit("register", function (form) {
    var name = form.user_name.value.trim();
    return api("POST", "/user", { user_name: name, pwd: form.pwd.value }).then(function (r) {
      if (ok(r)) { window.location.assign("/userhome"); } else { showError(form, message(r.status, r.body)); }
    });
  });

  onSubmit("sign-in", function (form) {
    var name = form.user_name.value.trim();
    return api("POST", "/user/" + seg(name), { pwd: form.pwd.value }).then(function (r) {
      if (ok(r)) { window.location.assign("/userhome"); } else { showError(form, message(r.status, r.body)); }
    });
  });

  onSubmit("comment", function (form) {
    var vid = document.querySelector("[data-video]").getAttribute("data-video");
    var content = form.content.value;
    return api("POST", "/videos/" + vid + "/comments", { content: content }).then(function (r) {
      if (ok(r)) { window.location.reload(); } else { showError(form, message(r.status, r.body)); }
    });
  });

  // Why an upload was refused, in the words of what the visitor can do about it. The stream
  // service answers these before the file is through (the web relays them at once), so they
  // are shown as what they are, never as "busy".
  function uploadMessage(form, status, body) {
    var code = body && body.error_code;
    if (status === 413 || code === "008") return tooLarge(form, null) + PENDING;
    if (status === 415 || code === "009") return FRIENDLY["009"] + PENDING;
    if (status === 409 || code === "007") return "This video already has its file — reload the page to see it.";
    if (status === 404 || code === "006") return "This video is gone — it may have been deleted. Reload the page.";
    if (status === 401 || code === "002") return "Your session has ended — please sign in again, then upload.";
    return message(status, body) + PENDING;
  }

  function tooLarge(form, size) {
    var limit = form.getAttribute("data-max-size");
    var text = "That file is too large";
    if (size !== null) text += " (" + humanSize(size) + ")";
    return text + (limit ? " — the limit is " + limit + "." : ".");
  }

  // Binary multiples with one decimal, as the server's hint next to the input shows them.
  function humanSize(bytes) {
    if (bytes < 1024) return bytes + " B";
    var units = ["KB", "MB", "GB", "TB"];
    var v = bytes / 1024, u = 0;
    while (v >= 1024 && u + 1 < units.length) { v /= 1024; u++; }
    return v.toFixed(1) + " " + units[u];
  }

  // A step of a direct upload at the site (`ticket`, `complete`): a bodiless POST.
  function step(vid, what) {
    return answer(fetch("/upload/" + vid + "/" + what, {
      method: "POST",
      headers: { "Accept": "application/json" },
      credentials: "same-origin"
    }));
  }

  // Posts `data` with XMLHttpRequest, whose upload progress events drive the bar (fetch has
  // none); resolves to {status, text}, status 0 when the request failed.
  function send(url, data, show) {
    return new Promise(function (resolve) {
      var xhr = new XMLHttpRequest();
      var bar = document.getElementById("up-bar");
      var events = 0;
      xhr.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable) return;
        // Counted on the bar so that a test (or a curious reader) can tell real progress
        // events from the final jump to 100%.
        bar.setAttribute("data-events", String(++events));
        show(Math.floor((e.loaded / e.total) * 100));
      });
      xhr.addEventListener("load", function () { resolve({ status: xhr.status, text: xhr.responseText }); });
      xhr.addEventListener("error", function () { resolve({ status: 0, text: "" }); });
      xhr.open("POST", url);
      xhr.send(data);
    });
  }

  // Through the site: `/upload/:vid` streams the file on to the stream service. Resolves to
  // null when the video is ready, else to the message that says why not.
  function uploadThrough(form, vid, file, show) {
    var data = new FormData();
    data.append("file", file, file.name);
    return send("/upload/" + vid, data, show).then(function (r) {
      if (ok(r)) return null;
      return r.status === 0 ? message(0, null) : uploadMessage(form, r.status, json(r.text));
    });
  }

  // Straight to the object store: the site's ticket is the store's form (its fields, then the
  // file under `file_field`), posted to the store's `url`; then `complete` checks the object
  // and makes the video ready. The bytes never pass through the site.
  function uploadDirect(form, vid, file, show) {
    return step(vid, "ticket").then(function (t) {
      if (!ok(t)) return uploadMessage(form, t.status, t.body);
      var ticket = t.body;
      if (file.size > ticket.max_bytes) return tooLarge(form, file.size) + PENDING;
      var data = new FormData();
      Object.keys(ticket.fields).forEach(function (k) { data.append(k, ticket.fields[k]); });
      data.append(ticket.file_field, file, file.name);
      return send(ticket.url, data, show).then(function (r) {
        if (r.status === 0) return "Cannot reach the video store. Check your connection." + PENDING;
        if (!ok(r)) return storeMessage(form, r.status, r.text, file.size);
        return step(vid, "complete").then(function (c) {
          return ok(c) ? null : uploadMessage(form, c.status, c.body);
        });
      });
    });
  }

  // The store's refusal of a form post, from its S3 error document: a file over the policy's
  // size range (AWS says EntityTooLarge, Garage "File size does not match policy") reads as
  // the site's own 413 does; a post after the ticket's expiry (AWS "Policy expired", Garage
  // "Expiration date is in the past") says so.
  function storeMessage(form, status, text, size) {
    var doc = null;
    try { doc = new DOMParser().parseFromString(text || "", "application/xml"); } catch (e) { doc = null; }
    function tag(name) {
      var el = doc && doc.getElementsByTagName(name)[0];
      return el ? el.textContent : "";
    }
    var code = tag("Code"), detail = tag("Message");
    if (code === "EntityTooLarge" || /size|too large|content-length/i.test(detail)) {
      return tooLarge(form, size) + PENDING;
    }
    if (/expired|expiration/i.test(detail)) {
      return "The upload took too long and its permission ran out." + PENDING;
    }
    return "The video store refused the file (" + status + ")." + PENDING;
  }

  // Upload: check the size, create the video record, then send the file: through the site, or
  // with an object store (`data-direct-upload`) straight to it. Either way the bar moves.
  onSubmit("upload", function (form) {
    var file = form.file.files[0];
    var name = form.name.value.trim();
    var box = document.getElementById("up-progress");
    var bar = document.getElementById("up-bar");
    var pct = document.getElementById("up-pct");
    function show(p) { bar.value = p; pct.textContent = p + "%"; }
    if (!file) { showError(form, "Choose a video file first."); return Promise.resolve(); }
    // A file over the limit is refused here, before a record is made or a byte is sent; the
    // server (or the store) still checks, and its refusal is shown the same way.
    var max = Number(form.getAttribute("data-max-bytes"));
    if (max > 0 && file.size > max) { showError(form, tooLarge(form, file.size)); return Promise.resolve(); }
    return api("POST", "/user/" + seg(me()) + "/videos", { name: name }).then(function (r) {
      if (!ok(r)) { showError(form, message(r.status, r.body)); return; }
      var vid = r.body.id;
      var upload = form.hasAttribute("data-direct-upload") ? uploadDirect : uploadThrough;
      box.hidden = false;
      show(0);
      return upload(form, vid, file, show).then(function (refused) {
        if (refused !== null) { box.hidden = true; showError(form, refused); return; }
        show(100);
        var slot = form.querySelector(".alert");
        slot.textContent = "Uploaded “" + isolate(name) + "”.";
        slot.classList.add("ok");
        slot.hidden = false;
        window.setTimeout(function () { window.location.reload(); }, 700);
      });
    });
  });
  document.addEventListener("click", function (ev) {
    var el = ev.target.closest && ev.target.closest("button[data-action]");
    if (!el) return;
    var action = el.getAttribute("data-action");
    if (action === "sign-out") {
      api("DELETE", "/user/" + seg(me())).then(function () { window.location.assign("/"); });
    } else if (action === "delete-video") {
      var id = el.getAttribute("data-id");
      if (!window.confirm("Delete “" + isolate(el.getAttribute("data-name")) + "”? This cannot be undone.")) return;
      el.disabled = true;
      api("DELETE", "/user/" + seg(me()) + "/videos/" + id).then(function (r) {
        if (ok(r)) {
          var then = el.getAttribute("data-then");
          if (then) { window.location.assign(then); return; }
          var row = document.getElementById("video-" + id);
          if (row) row.remove();
        } else { el.disabled = false; window.alert(message(r.status, r.body)); }
      });
    } else if (action === "delete-comment") {
      var cid = el.getAttribute("data-id");
      var vid = document.querySelector("[data-video]").getAttribute("data-video");
      if (!window.confirm("Delete this comment?")) return;
      el.disabled = true;
      api("DELETE", "/videos/" + vid + "/comment/" + cid).then(function (r) {
        if (ok(r)) {
          var li = document.getElementById("comment-" + cid);
          if (li) li.remove();
        } else { el.disabled = false; window.alert(message(r.status, r.body)); }
      });
    }
  });
})();
