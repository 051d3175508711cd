// The browser phone (architecture section 10).
//
// - The API key is read from its field when it is needed, sent in an Authorization header to
//   list the numbers and, once, to POST /v1/web-sessions; after that trade the field is
//   cleared. It is never stored and never put in a URL.
// - The call-only token travels in the WebSocket's first message, never in its URL.
// - Everything the model or a tool produced is rendered with textContent, never as HTML
//   (the page's policy also turns HTML sinks off with Trusted Types).
// - window.phonebooth exposes the call's state for tests and curious users: the transcript,
//   the agent audio as received (8 kHz 16-bit samples) and playback figures. Never the key
//   or the token.

const RATE = 8000;
const MAX_RECEIVED_SAMPLES = RATE * 600; // keep at most 10 minutes of the agent's audio
const CLOSE_REASONS = {
  4400: "the server did not understand the call request",
  4401: "the call token was refused (expired? ask for a new call)",
  4403: "this page's address is not allowed to place calls (PHONEBOOTH_ALLOWED_ORIGINS)",
  4404: "that number is not one of this installation's numbers",
  4503: "the server is at its concurrent-call limit; try again shortly",
};
const ROLE_LABELS = {
  user: "caller",
  assistant: "agent",
  tool_call: "tool call",
  tool_response: "tool result",
  system: "phone",
};

// G.711 mu-law decoding table (the ITU reference algorithm).
const ULAW = new Int16Array(256);
for (let i = 0; i < 256; i++) {
  const u = ~i & 0xff;
  const magnitude = (((u & 0x0f) << 3) + 0x84) << ((u >> 4) & 0x07);
  ULAW[i] = u & 0x80 ? 0x84 - magnitude : magnitude - 0x84;
}

function ulawDecode(bytes) {
  const pcm = new Int16Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) pcm[i] = ULAW[bytes[i]];
  return pcm;
}

function toBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
  return btoa(text);
}

function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

const pb = {
  state: "idle", // idle, connecting, in_call, ended, failed
  callId: null,
  socketUrl: null,
  closeCode: null,
  error: null,
  transcript: [], // {role, text}: live while the call runs, the call's record once it ended
  received: [], // Int16Array per media message: the agent's audio as the server sent it
  receivedSamples: 0,
  sentFrames: 0,
  cleared: 0,
  played: { samples: 0, audible: 0, peak: 0, underruns: 0, skipped: 0 },
  ended: null, // the `ended` call object
  ulawDecode,
  receivedPcmBase64() {
    const all = new Int16Array(this.receivedSamples);
    let at = 0;
    for (const chunk of this.received) {
      all.set(chunk, at);
      at += chunk.length;
    }
    return toBase64(new Uint8Array(all.buffer));
  },
};
Object.defineProperty(window, "phonebooth", { value: pb });

const ui = {
  key: document.getElementById("api-key"),
  load: document.getElementById("load-numbers"),
  number: document.getElementById("number"),
  call: document.getElementById("call"),
  hangup: document.getElementById("hangup"),
  status: document.getElementById("status"),
  transcript: document.getElementById("transcript"),
};

let line = null; // the live call: {ws, audio, openAgentLine}

function setStatus(state, text) {
  pb.state = state;
  ui.status.textContent = text;
  const busy = state === "connecting" || state === "in_call";
  ui.call.disabled = busy || !ui.number.value;
  ui.hangup.disabled = !busy;
  ui.load.disabled = busy;
  ui.number.disabled = busy || ui.number.options.length === 0 || !ui.number.value;
}

function fail(message) {
  pb.error = message;
  addLine("system", message);
  setStatus("failed", `Failed: ${message}`);
}

// -- transcript (textContent only) -------------------------------------------------------

function renderLine(entry) {
  const item = document.createElement("li");
  item.className = entry.role in ROLE_LABELS ? entry.role : "system";
  const role = document.createElement("span");
  role.className = "role";
  role.textContent = ROLE_LABELS[entry.role] || entry.role;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = entry.text;
  item.append(role, text);
  ui.transcript.append(item);
  return text;
}

function addLine(role, text) {
  const entry = { role, text };
  pb.transcript.push(entry);
  entry.node = renderLine(entry);
  return entry;
}

function agentDelta(delta) {
  if (!line.openAgentLine) line.openAgentLine = addLine("assistant", "");
  const entry = line.openAgentLine;
  entry.text += delta;
  entry.node.textContent = entry.text;
}

function asText(content) {
  return typeof content === "string" ? content : JSON.stringify(content);
}

function showRecord(rows) {
  pb.transcript = [];
  ui.transcript.replaceChildren();
  for (const row of rows) {
    const content = row.content;
    const call = row.role === "tool_call" && content && typeof content === "object";
    addLine(row.role, call ? `${content.name} ${asText(content.arguments)}` : asText(content));
  }
}

// -- REST (the key only ever in a header) ------------------------------------------------

function currentKey() {
  const key = ui.key.value.trim();
  if (!key) throw new Error("enter an API key first");
  return key;
}

async function api(method, path, key, body) {
  const headers = { Authorization: `Bearer ${key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.detail || `HTTP ${response.status}`);
  return answer;
}

async function loadNumbers() {
  try {
    const numbers = await api("GET", "/v1/phone-numbers", currentKey());
    const options = numbers.map((n) => {
      const option = document.createElement("option");
      option.value = n.number;
      option.textContent = n.label ? `${n.number} (${n.label})` : n.number;
      return option;
    });
    if (options.length === 0) {
      const none = document.createElement("option");
      none.value = "";
      none.textContent = "This organization has no numbers";
      options.push(none);
    }
    ui.number.replaceChildren(...options);
    setStatus("idle", numbers.length ? "Pick a number and call" : "No numbers");
  } catch (error) {
    fail(`could not list numbers: ${error.message}`);
  }
}

// -- audio -------------------------------------------------------------------------------

async function startAudio(context) {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  });
  await context.audioWorklet.addModule("/phone/phone-worklet.js");
  const capture = new AudioWorkletNode(context, "phonebooth-capture", {
    numberOfInputs: 1,
    numberOfOutputs: 1,
    outputChannelCount: [1],
    channelCount: 1,
    channelCountMode: "explicit",
  });
  const playback = new AudioWorkletNode(context, "phonebooth-playback", {
    numberOfInputs: 0,
    numberOfOutputs: 1,
    outputChannelCount: [1],
  });
  capture.port.onmessage = (event) => sendFrame(event.data);
  playback.port.onmessage = (event) => Object.assign(pb.played, event.data);
  context.createMediaStreamSource(stream).connect(capture);
  capture.connect(context.destination); // silent output: keeps the node in the render graph
  playback.connect(context.destination);
  await context.resume();
  return { context, stream, playback };
}

function stopAudio(audio) {
  if (!audio) return;
  for (const track of audio.stream.getTracks()) track.stop();
  audio.context.close().catch(() => {});
}

function sendFrame(frame) {
  if (!line || pb.state !== "in_call" || line.ws.readyState !== WebSocket.OPEN) return;
  line.ws.send(JSON.stringify({ type: "media", payload: toBase64(frame) }));
  pb.sentFrames++;
}

function playMedia(payload) {
  const pcm = ulawDecode(fromBase64(payload));
  if (pb.receivedSamples + pcm.length <= MAX_RECEIVED_SAMPLES) {
    pb.received.push(pcm);
    pb.receivedSamples += pcm.length;
  }
  if (!line.audio) return;
  const samples = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
  line.audio.playback.port.postMessage(samples, [samples.buffer]);
}

// -- the call ----------------------------------------------------------------------------

function socketUrl() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}/v1/web/call`;
}

function onMessage(message) {
  switch (message.type) {
    case "setup":
      pb.callId = message.call_id;
      setStatus("in_call", `In call ${message.call_id}`);
      break;
    case "media":
      playMedia(message.payload);
      break;
    case "clear":
      pb.cleared++;
      if (line.audio) line.audio.playback.port.postMessage("clear");
      break;
    case "agent_text":
      agentDelta(message.delta);
      break;
    case "agent_turn_end":
      line.openAgentLine = null;
      break;
    case "tool_call":
      line.openAgentLine = null;
      addLine("tool_call", `${message.name} ${asText(message.arguments)}`);
      break;
    case "tool_result":
      addLine("tool_response", `${message.name} → ${asText(message.result)}`);
      break;
    case "error":
      addLine("system", message.detail);
      break;
    case "ended":
      pb.ended = message;
      showRecord(message.transcripts || []);
      setStatus("ended", `Call ended (${message.end_reason})`);
      break;
    default:
      break;
  }
}

function onClose(event) {
  pb.closeCode = event.code;
  const current = line;
  line = null;
  if (current) stopAudio(current.audio);
  if (pb.state === "ended") return;
  fail(CLOSE_REASONS[event.code] || `the call was cut off (${event.code})`);
}

async function placeCall() {
  const toNumber = ui.number.value;
  if (!toNumber || line) return;
  // Created inside the click, so the browser lets it play.
  const context = new AudioContext({ latencyHint: "interactive" });
  pb.transcript = [];
  pb.received = [];
  pb.receivedSamples = 0;
  pb.callId = null;
  pb.ended = null;
  pb.error = null;
  ui.transcript.replaceChildren();
  setStatus("connecting", "Connecting…");
  let token;
  try {
    const session = await api("POST", "/v1/web-sessions", currentKey(), { to_number: toNumber });
    token = session.token;
    ui.key.value = ""; // traded: from here on the page holds only a call-only token
  } catch (error) {
    context.close().catch(() => {});
    fail(`could not start a web session: ${error.message}`);
    return;
  }
  let audio;
  try {
    audio = await startAudio(context);
  } catch (error) {
    context.close().catch(() => {});
    fail(`microphone: ${error.message}`);
    return;
  }
  const url = socketUrl();
  pb.socketUrl = url;
  const ws = new WebSocket(url);
  line = { ws, audio, openAgentLine: null };
  ws.onopen = () => {
    ws.send(JSON.stringify({ type: "start", token, audio: true }));
    token = null;
  };
  ws.onmessage = (event) => onMessage(JSON.parse(event.data));
  ws.onclose = onClose;
}

function hangUp() {
  if (line && line.ws.readyState === WebSocket.OPEN) {
    line.ws.send(JSON.stringify({ type: "hangup" }));
    ui.hangup.disabled = true;
    ui.status.textContent = "Hanging up…";
  }
}

ui.load.addEventListener("click", loadNumbers);
ui.number.addEventListener("change", () => setStatus(pb.state, ui.status.textContent));
ui.call.addEventListener("click", placeCall);
ui.hangup.addEventListener("click", hangUp);
setStatus("idle", "Idle");
