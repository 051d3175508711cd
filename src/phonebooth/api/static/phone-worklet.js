// Audio worklets of the browser phone, run on the audio thread so a busy page never drops
// frames:
// - "phonebooth-capture": the microphone, low-passed and resampled to 8 kHz, G.711 mu-law
//   encoded, posted to the page in frames of 20 ms (160 bytes) at the audio clock's pace;
// - "phonebooth-playback": a ring buffer of the agent's 8 kHz audio played at the context's
//   rate; "clear" drops what is buffered (the caller barged in).

const TARGET_RATE = 8000;
const FRAME = 160; // 20 ms at 8 kHz
const CUTOFF_HZ = 3600; // below 4 kHz (half of 8 kHz) so the decimation does not alias

// G.711 mu-law encoding of one 16-bit sample (the ITU reference algorithm, bit for bit).
const SEGMENT_ENDS = [0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff];

function ulawEncode(sample) {
  let value = sample >> 2;
  let mask = 0xff;
  if (value < 0) {
    value = -value;
    mask = 0x7f;
  }
  if (value > 8159) value = 8159;
  value += 0x21;
  let segment = 0;
  while (segment < 8 && value > SEGMENT_ENDS[segment]) segment++;
  if (segment >= 8) return 0x7f ^ mask;
  return ((segment << 4) | ((value >> (segment + 1)) & 0x0f)) ^ mask;
}

// A windowed-sinc low-pass (Blackman window) normalized to unit gain.
function lowPass(cutoffHz, rate, taps) {
  const h = new Float32Array(taps);
  const fc = cutoffHz / rate;
  const middle = (taps - 1) / 2;
  let sum = 0;
  for (let i = 0; i < taps; i++) {
    const x = i - middle;
    const sinc = x === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * x) / (Math.PI * x);
    const phase = (2 * Math.PI * i) / (taps - 1);
    const window = 0.42 - 0.5 * Math.cos(phase) + 0.08 * Math.cos(2 * phase);
    h[i] = sinc * window;
    sum += h[i];
  }
  for (let i = 0; i < taps; i++) h[i] /= sum;
  return h;
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / TARGET_RATE; // input samples per output sample
    const taps = this.step > 1 ? 2 * Math.ceil(8 * this.step) + 1 : 1;
    this.filter = taps > 1 ? lowPass(CUTOFF_HZ, sampleRate, taps) : Float32Array.of(1);
    let size = 1024;
    while (size < 4 * (taps + 256)) size *= 2;
    this.history = new Float32Array(size);
    this.mask = size - 1;
    this.written = 0; // input samples seen so far
    this.position = 0; // input index of the next output sample
    this.frame = new Uint8Array(FRAME);
    this.used = 0;
    this.silence = new Float32Array(128);
  }

  filtered(n) {
    const h = this.filter;
    let acc = 0;
    for (let j = 0; j < h.length && j <= n; j++) acc += h[j] * this.history[(n - j) & this.mask];
    return acc;
  }

  process(inputs) {
    // No input (microphone gone or not started yet) counts as silence: the line stays paced.
    const channel = (inputs[0] && inputs[0][0]) || this.silence;
    for (let i = 0; i < channel.length; i++) {
      this.history[this.written & this.mask] = channel[i];
      this.written++;
    }
    while (this.position + 1 < this.written) {
      const i0 = Math.floor(this.position);
      const frac = this.position - i0;
      const a = this.filtered(i0);
      const value = frac === 0 ? a : a + (this.filtered(i0 + 1) - a) * frac;
      const sample = Math.max(-32768, Math.min(32767, Math.round(value * 32767)));
      this.frame[this.used++] = ulawEncode(sample);
      if (this.used === FRAME) {
        this.port.postMessage(this.frame, [this.frame.buffer]);
        this.frame = new Uint8Array(FRAME);
        this.used = 0;
      }
      this.position += this.step;
    }
    return true;
  }
}

const PRIME = 480; // 60 ms buffered before playback starts (and again after an underrun)
const MAX_BUFFERED = 8000; // over 1 s behind (clock drift, a burst): skip to PRIME
const AUDIBLE = 0.03; // about -30 dBFS

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.size = 1 << 19; // 65 s at 8 kHz
    this.buffer = new Float32Array(this.size);
    this.mask = this.size - 1;
    this.writeAt = 0; // 8 kHz samples received
    this.readAt = 0; // fractional 8 kHz read position
    this.step = TARGET_RATE / sampleRate;
    this.playing = false;
    this.stats = { samples: 0, audible: 0, peak: 0, underruns: 0, skipped: 0 };
    this.sinceReport = 0;
    this.port.onmessage = (event) => this.receive(event.data);
  }

  receive(message) {
    if (message === "clear") {
      this.readAt = this.writeAt;
      this.playing = false;
      return;
    }
    for (let i = 0; i < message.length; i++) this.buffer[this.writeAt++ & this.mask] = message[i];
    if (this.writeAt - this.readAt > MAX_BUFFERED) {
      this.stats.skipped += this.writeAt - PRIME - this.readAt;
      this.readAt = this.writeAt - PRIME;
    }
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing && this.writeAt - this.readAt >= PRIME) this.playing = true;
    for (let i = 0; i < out.length; i++) {
      const i0 = Math.floor(this.readAt);
      if (!this.playing || i0 + 1 >= this.writeAt) {
        if (this.playing) this.stats.underruns++;
        this.playing = false;
        out[i] = 0;
        continue;
      }
      const a = this.buffer[i0 & this.mask];
      const value = a + (this.buffer[(i0 + 1) & this.mask] - a) * (this.readAt - i0);
      out[i] = value;
      this.readAt += this.step;
      const magnitude = Math.abs(value);
      this.stats.samples++;
      if (magnitude > AUDIBLE) this.stats.audible++;
      if (magnitude > this.stats.peak) this.stats.peak = magnitude;
    }
    this.sinceReport += out.length;
    if (this.sinceReport >= sampleRate / 4) {
      this.sinceReport = 0;
      this.port.postMessage({ ...this.stats });
    }
    return true;
  }
}

registerProcessor("phonebooth-capture", CaptureProcessor);
registerProcessor("phonebooth-playback", PlaybackProcessor);
