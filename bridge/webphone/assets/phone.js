// sipfed web phone: JsSIP over a SIP WebSocket (RFC 7118), WebRTC media.
// Everything the page does is also reachable as window.sipfedPhone, so that
// tests can drive it through the DevTools protocol.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const MAX_EVENTS = 200;

  let ua = null;          // JsSIP.UA
  let session = null;     // current JsSIP.RTCSession
  let localStream = null; // our microphone/camera stream
  let domain = '';        // domain of the signed-in address
  let statsTimer = null;

  const phone = {
    state: 'idle',
    registered: false,
    lastCause: null,
    callsEnded: 0,
    incoming: null,
    events: [],
    muted: false,
    register, unregister, call, answer, decline, hangup, dtmf, hold, unhold, mute, stats,
  };
  window.sipfedPhone = phone;

  // ---- log and state ----------------------------------------------------

  function log(text) {
    text = String(text).slice(0, 200);
    phone.events.push(text);
    if (phone.events.length > MAX_EVENTS) phone.events.splice(0, phone.events.length - MAX_EVENTS);
    const li = document.createElement('li');
    li.textContent = new Date().toLocaleTimeString() + '  ' + text;
    const ol = $('events');
    ol.prepend(li);
    while (ol.children.length > 50) ol.lastElementChild.remove();
  }

  function setState(s) {
    if (phone.state !== s) {
      phone.state = s;
      log('state ' + s);
    }
    render();
  }

  // The state without a call: registered or idle.
  function restState() {
    return phone.registered ? 'registered' : 'idle';
  }

  const causeOf = (e) => (e && (e.cause || (e.message && e.message.reason_phrase))) || 'unknown';

  // ---- registration -------------------------------------------------------

  // register({uri, password, ws}) signs in; resolves on 'registered', rejects
  // with the cause on 'registrationFailed' or when the WebSocket cannot connect.
  function register(opts) {
    opts = opts || {};
    let uri = String(opts.uri || '').trim();
    const ws = String(opts.ws || $('ws').value || '').trim(); // default: the form's, from config.json
    if (!uri.includes('@') && $('user').dataset.domain) uri += '@' + $('user').dataset.domain;
    if (!/^sips?:/i.test(uri)) uri = 'sip:' + uri;
    stopUA();
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (ok, v) => {
        if (settled) return;
        settled = true;
        ok ? resolve(v) : reject(v);
      };
      try {
        const socket = new JsSIP.WebSocketInterface(ws);
        ua = new JsSIP.UA({
          sockets: [socket],
          uri,
          password: opts.password || '',
          register: true,
          session_timers: false,
          user_agent: 'JsSIP ' + JsSIP.version + ' (sipfed web phone)',
        });
      } catch (err) {
        ua = null;
        phone.lastCause = 'Configuration Error: ' + (err && err.message);
        log('register failed: ' + phone.lastCause);
        render();
        settle(false, new Error(phone.lastCause));
        return;
      }
      const me = ua;
      domain = me.configuration.uri.host;
      me.on('connecting', () => { if (ua === me) log('connecting ' + ws); });
      me.on('connected', () => { if (ua === me) log('connected'); });
      me.on('disconnected', (e) => {
        if (ua !== me) return;
        log('disconnected' + (e && e.error ? ' (error)' : ''));
        if (!phone.registered) {
          phone.lastCause = JsSIP.C.causes.CONNECTION_ERROR;
          settle(false, new Error(phone.lastCause));
        }
      });
      me.on('registered', () => {
        if (ua !== me) return;
        phone.registered = true;
        log('registered ' + uri);
        if (!session) setState('registered');
        else render();
        settle(true, 'registered');
      });
      me.on('unregistered', () => {
        if (ua !== me) return;
        phone.registered = false;
        log('unregistered');
        if (!session) setState('idle');
        else render();
      });
      me.on('registrationFailed', (e) => {
        if (ua !== me) return;
        phone.registered = false;
        phone.lastCause = causeOf(e);
        log('registration failed: ' + phone.lastCause);
        if (!session) setState('idle');
        settle(false, new Error(phone.lastCause));
      });
      me.on('newRTCSession', (e) => { if (ua === me) newSession(e); });
      me.start();
      render();
    });
  }

  function stopUA() {
    if (!ua) return;
    const old = ua;
    ua = null;
    if (session) terminate(session);
    try { old.stop(); } catch (err) { /* already stopped */ }
    phone.registered = false;
  }

  // unregister signs out and closes the WebSocket.
  function unregister() {
    stopUA();
    log('signed out');
    setState('idle');
  }

  // ---- calls ------------------------------------------------------------

  // target turns a bare user name into user@own-domain and adds sip:.
  function target(t) {
    t = String(t || '').trim();
    if (!t) throw new Error('no target');
    if (!/^(sips?|tel):/i.test(t)) {
      if (!t.includes('@')) t += '@' + domain;
      t = 'sip:' + t;
    }
    return t;
  }

  // ?processing=0 turns the microphone's echo cancellation, noise
  // suppression and gain control off: a steady test tone is otherwise
  // taken for noise and suppressed.
  const audio = params.get('processing') === '0'
    ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false }
    : true;

  async function getMedia(video) {
    try {
      return await navigator.mediaDevices.getUserMedia({ audio, video: !!video });
    } catch (err) {
      if (!video) throw err;
      log('no camera (' + err.name + '): audio only');
      return navigator.mediaDevices.getUserMedia({ audio, video: false });
    }
  }

  function showLocal(stream) {
    localStream = stream;
    $('local').srcObject = stream;
  }

  const rtcOptions = () => ({ iceServers: [] });

  // call(target, {video}) calls target; resolves when the call is established
  // ('confirmed'), rejects with the cause when it fails.
  async function call(to, opts) {
    opts = opts || {};
    if (!ua) throw new Error('not signed in');
    if (session) throw new Error('already in a call');
    const uri = target(to);
    const video = opts.video !== undefined ? !!opts.video : $('video').checked;
    const stream = await getMedia(video);
    if (session || !ua) { stopStream(stream); throw new Error('call raced'); }
    showLocal(stream);
    log('calling ' + uri);
    const s = ua.call(uri, {
      mediaStream: stream,
      pcConfig: rtcOptions(),
      rtcOfferConstraints: { offerToReceiveAudio: true, offerToReceiveVideo: video },
    });
    return settled(s);
  }

  // answer({video}) answers the ringing incoming call; resolves when it is
  // established, rejects with the cause when it fails.
  async function answer(opts) {
    opts = opts || {};
    const s = session;
    if (!s || s.direction !== 'incoming' || phone.state !== 'incoming') throw new Error('no incoming call');
    const video = opts.video !== undefined ? !!opts.video : $('video').checked;
    const p = settled(s);
    const stream = await getMedia(video);
    if (session !== s || s.isEnded()) { stopStream(stream); throw new Error('call ended: ' + phone.lastCause); }
    showLocal(stream);
    log('answering');
    s.answer({ mediaStream: stream, pcConfig: rtcOptions() });
    return p;
  }

  // decline rejects the ringing incoming call (486 Busy Here).
  function decline() {
    if (session && phone.state === 'incoming') terminate(session, { status_code: 486, reason_phrase: 'Busy Here' });
  }

  function terminate(s, opts) {
    try {
      s.terminate(opts);
    } catch (err) { // already terminated
      log('terminate: ' + err.message);
    }
  }

  // hangup ends (or cancels, or declines) the current call.
  function hangup() {
    if (!session) return false;
    if (phone.state === 'incoming') decline();
    else terminate(session);
    return true;
  }

  // settled is a promise of the session's outcome: resolved on 'confirmed',
  // rejected on 'failed' (or 'ended' before it). Unhandled rejections are
  // silenced: callers that do not await it should not see errors.
  function settled(s) {
    const p = new Promise((resolve, reject) => {
      if (s.isEstablished()) { resolve('in-call'); return; }
      s.on('confirmed', () => resolve('in-call'));
      s.on('failed', (e) => reject(new Error(causeOf(e))));
      s.on('ended', (e) => reject(new Error(causeOf(e))));
    });
    p.catch(() => {});
    return p;
  }

  function newSession(e) {
    const s = e.session;
    if (e.originator === 'remote' && session) {
      log('busy: second call from ' + s.remote_identity.uri.toString());
      terminate(s, { status_code: 486, reason_phrase: 'Busy Here' });
      return;
    }
    session = s;
    phone.muted = false;
    if (s.connection) watchPC(s.connection);
    s.on('peerconnection', (ev) => watchPC(ev.peerconnection));
    // JsSIP waits for ICE gathering to complete; do not let a slow one hold
    // the call up (with no STUN servers it is over at once anyway).
    let iceTimer = null;
    s.on('icecandidate', (ev) => {
      if (!iceTimer) iceTimer = setTimeout(() => { iceTimer = null; ev.ready(); }, 2000);
    });
    s.on('sdp', () => { if (iceTimer) { clearTimeout(iceTimer); iceTimer = null; } });
    s.on('progress', (ev) => {
      if (s.direction === 'outgoing') {
        log('progress ' + (ev.response ? ev.response.status_code : ''));
        setState('ringing');
      }
    });
    s.on('accepted', () => { log('accepted'); setState('in-call'); startStats(); });
    s.on('confirmed', () => { log('confirmed'); setState('in-call'); startStats(); });
    s.on('hold', (ev) => { log('hold (' + ev.originator + ')'); setState('held'); });
    s.on('unhold', (ev) => {
      log('unhold (' + ev.originator + ')');
      const h = s.isOnHold();
      setState(h.local || h.remote ? 'held' : 'in-call');
    });
    s.on('muted', () => { phone.muted = true; log('muted'); render(); });
    s.on('unmuted', () => { phone.muted = false; log('unmuted'); render(); });
    s.on('newDTMF', (ev) => { if (ev.originator === 'remote') log('dtmf in ' + ev.dtmf.tone); });
    s.on('ended', (ev) => finish(s, 'ended', ev));
    s.on('failed', (ev) => finish(s, 'failed', ev));
    if (e.originator === 'remote') {
      phone.incoming = s.remote_identity.uri.toString();
      log('incoming ' + phone.incoming);
      setState('incoming');
      if (params.get('autoanswer') === '1') {
        answer({}).catch((err) => log('autoanswer: ' + err.message));
      }
    } else {
      phone.incoming = null;
      setState('calling');
    }
  }

  function finish(s, how, e) {
    if (session !== s) return;
    session = null;
    phone.incoming = null;
    phone.muted = false;
    phone.lastCause = causeOf(e);
    phone.callsEnded++;
    log(how + ': ' + phone.lastCause + ' (' + (e && e.originator) + ')');
    stopStats();
    stopStream(localStream);
    localStream = null;
    $('local').srcObject = null;
    $('remote').srcObject = null;
    setState(how);
  }

  function stopStream(stream) {
    if (stream) stream.getTracks().forEach((t) => t.stop());
  }

  const watched = new WeakSet();
  function watchPC(pc) {
    if (!pc || watched.has(pc)) return;
    watched.add(pc);
    pc.addEventListener('track', (ev) => {
      const video = $('remote');
      let stream = video.srcObject;
      if (ev.streams && ev.streams[0]) {
        stream = ev.streams[0];
      } else {
        if (!stream) stream = new MediaStream();
        stream.addTrack(ev.track);
      }
      if (video.srcObject !== stream) video.srcObject = stream;
      video.play().catch(() => {});
      log('remote ' + ev.track.kind);
    });
    pc.addEventListener('iceconnectionstatechange', () => log('ice ' + pc.iceConnectionState));
  }

  // dtmf(digits) sends digits as RFC 4733 telephone-events.
  function dtmf(digits) {
    if (!session || !session.isEstablished()) throw new Error('not in a call');
    digits = String(digits);
    session.sendDTMF(digits, { transportType: 'RFC2833' });
    log('dtmf ' + digits);
  }

  // hold() and unhold() resolve when the re-INVITE was answered.
  function hold() { return reHold(true); }
  function unhold() { return reHold(false); }
  function reHold(on) {
    return new Promise((resolve, reject) => {
      if (!session || !session.isEstablished()) { reject(new Error('not in a call')); return; }
      const ok = on ? session.hold({}, () => resolve(phone.state)) : session.unhold({}, () => resolve(phone.state));
      if (!ok) reject(new Error(on ? 'cannot hold now' : 'cannot unhold now'));
    });
  }

  // mute(true) mutes the microphone, mute(false) unmutes it.
  function mute(on) {
    if (!session) throw new Error('not in a call');
    if (on === undefined) on = true;
    if (on) session.mute({ audio: true });
    else session.unmute({ audio: true });
    return !!on;
  }

  // ---- statistics -------------------------------------------------------

  // stats() gives the current call's RTCPeerConnection statistics as a plain
  // object (see stats.js; empty parts when there is no call).
  function stats() {
    return window.sipfedStats(session && session.connection);
  }

  function startStats() {
    if (statsTimer) return;
    const tick = () => stats().then(showStats).catch(() => {});
    tick();
    statsTimer = setInterval(tick, 1000);
  }

  function stopStats() {
    clearInterval(statsTimer);
    statsTimer = null;
  }

  function showStats(s) {
    const fmt = (v, d) => (v === undefined || v === null ? '–' : typeof v === 'number' && d !== undefined ? v.toFixed(d) : String(v));
    const ep = (c) => (c ? c.address + ':' + c.port : '–');
    const rows = [
      ['Audio in', `${fmt(s.audioIn.packetsReceived)} packets, level ${fmt(s.audioIn.audioLevel, 3)}, jitter ${fmt(s.audioIn.jitter, 3)} s, ${fmt(s.audioIn.codec)}`],
      ['Audio out', `${fmt(s.audioOut.packetsSent)} packets, ${fmt(s.audioOut.codec)}`],
      ['Video in', `${fmt(s.videoIn.framesDecoded)} frames, ${fmt(s.videoIn.frameWidth)}×${fmt(s.videoIn.frameHeight)}, ${fmt(s.videoIn.codec)}`],
      ['Video out', `${fmt(s.videoOut.framesEncoded)} frames, ${fmt(s.videoOut.codec)}`],
      ['Round trip', s.rtt === null ? '–' : (s.rtt * 1000).toFixed(1) + ' ms'],
      ['Path', s.selectedPair ? ep(s.selectedPair.local) + ' → ' + ep(s.selectedPair.remote) : '–'],
    ];
    const tbody = document.createElement('tbody');
    for (const [k, v] of rows) {
      const tr = tbody.insertRow();
      const th = document.createElement('th');
      th.textContent = k;
      tr.appendChild(th);
      tr.insertCell().textContent = v;
    }
    $('stats').replaceChild(tbody, $('stats').tBodies[0]);
  }

  // ---- the page -----------------------------------------------------------

  const STATUS = {
    idle: 'Not signed in', registered: 'Ready', calling: 'Calling…', ringing: 'Ringing…',
    incoming: 'Incoming call', 'in-call': 'In call', held: 'On hold', ended: 'Call ended', failed: 'Call failed',
  };

  function render() {
    const st = phone.state;
    const inCall = st === 'in-call' || st === 'held';
    let text = STATUS[st] || st;
    if ((st === 'ended' || st === 'failed') && phone.lastCause) text += ': ' + phone.lastCause;
    if (st === 'idle' && ua) text = 'Signing in…';
    if (phone.registered && (st === 'ended' || st === 'failed')) text += ' — ready';
    $('status').textContent = text;
    $('status').dataset.state = st;
    $('unregister').disabled = !ua;
    $('call').disabled = !ua || !!session;
    $('hangup').disabled = !session || st === 'incoming';
    $('answer').disabled = st !== 'incoming';
    $('decline').disabled = st !== 'incoming';
    $('incoming-box').hidden = st !== 'incoming';
    $('incoming').textContent = phone.incoming || '';
    $('mute').disabled = !inCall;
    $('mute').textContent = phone.muted ? 'Unmute' : 'Mute';
    $('mute').setAttribute('aria-pressed', String(phone.muted));
    $('hold').disabled = !inCall;
    $('hold').textContent = st === 'held' ? 'Resume' : 'Hold';
    $('hold').setAttribute('aria-pressed', String(st === 'held'));
    for (const b of $('keypad').querySelectorAll('button')) b.disabled = !inCall;
  }

  const complain = (what) => (err) => log(what + ': ' + (err && err.message ? err.message : err));

  function wire() {
    $('signin').addEventListener('submit', (ev) => {
      ev.preventDefault();
      register({ uri: $('user').value, password: $('password').value, ws: $('ws').value }).catch(complain('register'));
    });
    $('unregister').addEventListener('click', unregister);
    $('dial').addEventListener('submit', (ev) => {
      ev.preventDefault();
      call($('target').value, { video: $('video').checked }).catch(complain('call'));
    });
    $('hangup').addEventListener('click', hangup);
    $('answer').addEventListener('click', () => answer({ video: $('video').checked }).catch(complain('answer')));
    $('decline').addEventListener('click', decline);
    $('mute').addEventListener('click', () => mute(!phone.muted));
    $('hold').addEventListener('click', () => (phone.state === 'held' ? unhold() : hold()).catch(complain('hold')));
    $('keypad').addEventListener('click', (ev) => {
      const d = ev.target.dataset && ev.target.dataset.digit;
      if (d) { try { dtmf(d); } catch (err) { complain('dtmf')(err); } }
    });
  }

  async function init() {
    window.addEventListener('error', (ev) => log('error: ' + ev.message));
    window.addEventListener('unhandledrejection', (ev) => log('error: ' + (ev.reason && ev.reason.message)));
    wire();
    if (params.get('debug') === '1') JsSIP.debug.enable('JsSIP:*');
    else JsSIP.debug.disable();
    let cfg = {};
    try {
      const res = await fetch('config.json', { cache: 'no-store' });
      if (res.ok) cfg = await res.json();
    } catch (err) {
      log('config.json: ' + err.message);
    }
    if (cfg.domain) {
      $('user').dataset.domain = cfg.domain;
      $('user').placeholder = 'user@' + cfg.domain;
    }
    if (cfg.ws) $('ws').value = cfg.ws;
    if (params.get('user')) $('user').value = params.get('user');
    if (params.get('password')) $('password').value = params.get('password');
    if (params.get('ws')) $('ws').value = params.get('ws');
    if (params.get('video') === '0') $('video').checked = false;
    phone.ready = true;
    log('ready (JsSIP ' + JsSIP.version + ')');
    render();
    if (params.get('autoregister') === '1') {
      register({ uri: $('user').value, password: $('password').value, ws: $('ws').value }).catch(complain('register'));
    }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
