// sipfed web phone: RTCPeerConnection.getStats() as a plain object, shared
// by the JsSIP page (phone.js) and the SIP.js page (sipjs-phone.js).
//
//   window.sipfedStats(pc) → Promise of {
//     audioIn:  {packetsReceived, bytesReceived, packetsLost, audioLevel, jitter, codec},
//     audioOut: {packetsSent, bytesSent, codec},
//     videoIn:  {packetsReceived, framesDecoded, frameWidth, frameHeight, framesPerSecond, jitter, codec},
//     videoOut: {packetsSent, framesEncoded, frameWidth, frameHeight, codec},
//     remoteCandidates: [{address, port, type}],
//     selectedPair: {local: {address, port, type}, remote: {…}} or null,
//     rtt: seconds or null }
// with empty parts for media that is not there (or no pc at all).
'use strict';
window.sipfedStats = async function (pc) {
  const out = {
    audioIn: {}, audioOut: {}, videoIn: {}, videoOut: {},
    remoteCandidates: [], selectedPair: null, rtt: null,
  };
  if (!pc || pc.connectionState === 'closed') return out;
  const report = await pc.getStats();
  const byId = new Map();
  report.forEach((r) => byId.set(r.id, r));
  const codec = (r) => {
    const c = r.codecId && byId.get(r.codecId);
    return c && c.mimeType ? c.mimeType.replace(/^(audio|video)\//, '') : null;
  };
  const cand = (c) => (c ? { address: c.address || c.ip || null, port: c.port || null, type: c.candidateType || null } : null);
  let pairId = null;
  let trackLevel = null; // audioLevel of older Chromes' 'track' stats
  report.forEach((r) => {
    const kind = r.kind || r.mediaType;
    switch (r.type) {
      case 'inbound-rtp':
        if (kind === 'audio') {
          out.audioIn = {
            packetsReceived: r.packetsReceived || 0, bytesReceived: r.bytesReceived || 0,
            packetsLost: r.packetsLost || 0, audioLevel: r.audioLevel,
            jitter: r.jitter || 0, codec: codec(r),
          };
        } else if (kind === 'video') {
          out.videoIn = {
            packetsReceived: r.packetsReceived || 0, framesDecoded: r.framesDecoded || 0,
            frameWidth: r.frameWidth || 0, frameHeight: r.frameHeight || 0,
            framesPerSecond: r.framesPerSecond || 0, jitter: r.jitter || 0, codec: codec(r),
          };
        }
        break;
      case 'outbound-rtp':
        if (kind === 'audio') {
          out.audioOut = { packetsSent: r.packetsSent || 0, bytesSent: r.bytesSent || 0, codec: codec(r) };
        } else if (kind === 'video') {
          out.videoOut = {
            packetsSent: r.packetsSent || 0, framesEncoded: r.framesEncoded || 0,
            frameWidth: r.frameWidth || 0, frameHeight: r.frameHeight || 0, codec: codec(r),
          };
        }
        break;
      case 'track':
        if (kind === 'audio' && r.remoteSource && r.audioLevel !== undefined) trackLevel = r.audioLevel;
        break;
      case 'remote-candidate':
        out.remoteCandidates.push(cand(r));
        break;
      case 'transport':
        if (r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
        break;
      case 'candidate-pair':
        if (!pairId && r.nominated && r.state === 'succeeded') pairId = r.id;
        break;
      case 'remote-inbound-rtp':
        if (r.roundTripTime !== undefined && out.rtt === null) out.rtt = r.roundTripTime;
        break;
    }
  });
  if (out.audioIn.packetsReceived !== undefined && out.audioIn.audioLevel === undefined) {
    out.audioIn.audioLevel = trackLevel || 0;
  }
  const pair = pairId && byId.get(pairId);
  if (pair) {
    out.selectedPair = { local: cand(byId.get(pair.localCandidateId)), remote: cand(byId.get(pair.remoteCandidateId)) };
    if (pair.currentRoundTripTime !== undefined) out.rtt = pair.currentRoundTripTime;
  }
  return out;
};
