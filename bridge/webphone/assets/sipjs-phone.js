// sipfed web phone, SIP.js flavour: a minimal second browser SIP stack for
// tests (audio only). window.sipfedPhone has the same shape as on the JsSIP
// page: register, call, answer, hangup, dtmf, stats, state, registered, …
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);

  let ua = null;         // SIP.UserAgent
  let registerer = null; // SIP.Registerer
  let session = null;    // SIP.Inviter or SIP.Invitation
  let defaultDomain = '';
  let domain = '';

  const phone = {
    state: 'idle', registered: false, lastCause: null, callsEnded: 0, incoming: null, events: [],
    register, call, answer, hangup, dtmf, stats,
  };
  window.sipfedPhone = phone;

  function log(text) {
    text = String(text).slice(0, 200);
    phone.events.push(text);
    if (phone.events.length > 200) phone.events.splice(0, phone.events.length - 200);
    const li = document.createElement('li');
    li.textContent = new Date().toLocaleTimeString() + '  ' + text;
    $('events').prepend(li);
    while ($('events').children.length > 50) $('events').lastElementChild.remove();
  }

  function setState(s) {
    if (phone.state !== s) { phone.state = s; log('state ' + s); }
    $('status').textContent = s + (phone.lastCause && (s === 'ended' || s === 'failed') ? ': ' + phone.lastCause : '');
    $('call').disabled = !phone.registered || !!session;
    $('answer').disabled = s !== 'incoming';
    $('hangup').disabled = !session;
  }
  const rest = () => (phone.registered ? 'registered' : 'idle');

  const mediaOptions = () => ({
    sessionDescriptionHandlerOptions: { constraints: { audio: true, video: false } },
  });

  // register({uri, password, ws}): resolves when the REGISTER is accepted.
  async function register(opts) {
    opts = opts || {};
    let aor = String(opts.uri || '').trim();
    if (!aor.includes('@') && defaultDomain) aor += '@' + defaultDomain;
    if (!/^sips?:/i.test(aor)) aor = 'sip:' + aor;
    const uri = SIP.UserAgent.makeURI(aor);
    if (!uri) throw new Error('bad address ' + aor);
    if (ua) await ua.stop().catch(() => {});
    domain = uri.host;
    ua = new SIP.UserAgent({
      uri,
      transportOptions: { server: String(opts.ws || '') },
      authorizationUsername: uri.user,
      authorizationPassword: opts.password || '',
      userAgentString: 'SIP.js/' + SIP.version + ' (sipfed web phone)',
      logLevel: params.get('debug') === '1' ? 'debug' : 'warn',
      sessionDescriptionHandlerFactoryOptions: {
        peerConnectionConfiguration: { iceServers: [] },
        iceGatheringTimeout: 2000,
      },
      delegate: {
        onInvite: incoming,
        onDisconnect: (err) => {
          log('disconnected' + (err ? ': ' + err.message : ''));
          phone.registered = false;
          if (!session) setState('idle');
        },
      },
    });
    try {
      await ua.start();
    } catch (err) {
      phone.lastCause = 'Connection Error';
      throw new Error(phone.lastCause + ': ' + err.message);
    }
    log('connected');
    registerer = new SIP.Registerer(ua);
    registerer.stateChange.addListener((st) => {
      phone.registered = st === SIP.RegistererState.Registered;
      log('registerer ' + st);
      if (!session) setState(rest());
    });
    return new Promise((resolve, reject) => {
      registerer.register({
        requestDelegate: {
          onAccept: () => resolve('registered'),
          onReject: (res) => {
            phone.lastCause = res.message.statusCode + ' ' + res.message.reasonPhrase;
            log('registration failed: ' + phone.lastCause);
            reject(new Error(phone.lastCause));
          },
        },
      }).catch(reject);
    });
  }

  function target(t) {
    t = String(t || '').trim();
    if (!/^sips?:/i.test(t)) t = 'sip:' + (t.includes('@') ? t : t + '@' + domain);
    const uri = SIP.UserAgent.makeURI(t);
    if (!uri) throw new Error('bad target ' + t);
    return uri;
  }

  // track follows a session through its states; outcome resolves when it is
  // established and rejects when it ends before.
  function track(s) {
    session = s;
    let done;
    const outcome = new Promise((resolve, reject) => { done = { resolve, reject }; });
    outcome.catch(() => {});
    s.stateChange.addListener((st) => {
      log('session ' + st);
      switch (st) {
        case SIP.SessionState.Established: {
          const sdh = s.sessionDescriptionHandler;
          if (sdh && sdh.remoteMediaStream) {
            $('remote').srcObject = sdh.remoteMediaStream;
            $('remote').play().catch(() => {});
          }
          phone.incoming = null;
          setState('in-call');
          done.resolve('in-call');
          break;
        }
        case SIP.SessionState.Terminated:
          if (session === s) {
            session = null;
            phone.incoming = null;
            phone.callsEnded++;
            const failed = phone.state !== 'in-call';
            if (!failed || !phone.lastCause) phone.lastCause = failed ? 'Canceled' : 'Terminated';
            $('remote').srcObject = null;
            setState(failed ? 'failed' : 'ended');
          }
          done.reject(new Error(phone.lastCause || 'Terminated'));
          break;
      }
    });
    return outcome;
  }

  // call(target): resolves when the call is established.
  function call(to) {
    if (!ua || !phone.registered) return Promise.reject(new Error('not registered'));
    if (session) return Promise.reject(new Error('already in a call'));
    const uri = target(to);
    const inviter = new SIP.Inviter(ua, uri, mediaOptions());
    phone.lastCause = null;
    const outcome = track(inviter);
    setState('calling');
    log('calling ' + uri.toString());
    inviter.invite({
      requestDelegate: {
        onProgress: () => setState('ringing'),
        onReject: (res) => { phone.lastCause = res.message.statusCode + ' ' + res.message.reasonPhrase; },
      },
    }).catch((err) => { phone.lastCause = err.message; log('invite: ' + err.message); });
    return outcome;
  }

  function incoming(invitation) {
    if (session) {
      invitation.reject({ statusCode: 486 }).catch(() => {});
      return;
    }
    phone.lastCause = null;
    phone.incoming = invitation.remoteIdentity.uri.toString();
    const outcome = track(invitation);
    phone.pending = outcome;
    log('incoming ' + phone.incoming);
    setState('incoming');
    if (params.get('autoanswer') === '1') answer().catch((err) => log('autoanswer: ' + err.message));
  }

  // answer(): resolves when the incoming call is established.
  function answer() {
    const s = session;
    if (!s || phone.state !== 'incoming') return Promise.reject(new Error('no incoming call'));
    s.accept(mediaOptions()).catch((err) => log('accept: ' + err.message));
    return phone.pending;
  }

  function hangup() {
    const s = session;
    if (!s) return false;
    const st = s.state;
    let p;
    if (st === SIP.SessionState.Established) p = s.bye();
    else if (s instanceof SIP.Inviter) p = s.cancel();
    else p = s.reject();
    Promise.resolve(p).catch((err) => log('hangup: ' + err.message));
    return true;
  }

  function dtmf(digits) {
    const sdh = session && session.sessionDescriptionHandler;
    if (!sdh || !sdh.sendDtmf(String(digits))) throw new Error('cannot send DTMF');
    log('dtmf ' + digits);
  }

  function stats() {
    const sdh = session && session.sessionDescriptionHandler;
    return window.sipfedStats(sdh && sdh.peerConnection);
  }

  async function init() {
    window.addEventListener('error', (ev) => log('error: ' + ev.message));
    $('signin').addEventListener('submit', (ev) => {
      ev.preventDefault();
      register({ uri: $('user').value, password: $('password').value, ws: $('ws').value })
        .catch((err) => log('register: ' + err.message));
    });
    $('dial').addEventListener('submit', (ev) => {
      ev.preventDefault();
      call($('target').value).catch((err) => log('call: ' + err.message));
    });
    $('answer').addEventListener('click', () => answer().catch((err) => log('answer: ' + err.message)));
    $('hangup').addEventListener('click', hangup);
    try {
      const res = await fetch('config.json', { cache: 'no-store' });
      const cfg = res.ok ? await res.json() : {};
      if (cfg.domain) defaultDomain = cfg.domain;
      if (cfg.ws) $('ws').value = cfg.ws;
    } catch (err) {
      log('config.json: ' + err.message);
    }
    for (const k of ['user', 'password', 'ws']) if (params.get(k)) $(k).value = params.get(k);
    phone.ready = true;
    log('ready (SIP.js ' + SIP.version + ')');
    setState('idle');
    if (params.get('autoregister') === '1') {
      register({ uri: $('user').value, password: $('password').value, ws: $('ws').value })
        .catch((err) => log('register: ' + err.message));
    }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
