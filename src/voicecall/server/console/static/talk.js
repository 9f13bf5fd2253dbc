// A browser call: the microphone goes to the agent as 16-bit PCM over /console/call, the
// agent's μ-law audio is played back in order, marks are echoed once the audio queued before
// them has played, and a `clear` (the caller talked over the agent) drops what is queued.

const ULAW = new Float32Array(256);
for (let i = 0; i < 256; i++) {
  const u = ~i & 0xff;
  const sign = u & 0x80;
  const exponent = (u >> 4) & 0x07;
  const mantissa = u & 0x0f;
  let sample = ((mantissa << 3) + 0x84) << exponent;
  sample -= 0x84;
  ULAW[i] = (sign ? -sample : sample) / 32768;
}

export class BrowserCall {
  constructor({ onCall, onEnd }) {
    this.onCall = onCall;
    this.onEnd = onEnd;
    this.sources = new Set();
    this.marks = new Map();
    this.nextTime = 0;
    // What tests and the level meter read.
    this.stats = { framesSent: 0, samplesReceived: 0, samplesPlayed: 0, clears: 0, marks: 0 };
  }

  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    this.mic = new AudioContext();
    await this.mic.audioWorklet.addModule("/console/static/mic-worklet.js");
    const source = this.mic.createMediaStreamSource(this.stream);
    this.worklet = new AudioWorkletNode(this.mic, "mic-to-8k");
    source.connect(this.worklet);
    this.speaker = new AudioContext({ sampleRate: 8000 });
    this.analyser = this.speaker.createAnalyser();
    this.analyser.fftSize = 256;
    this.analyser.connect(this.speaker.destination);
    await Promise.all([this.mic.resume(), this.speaker.resume()]);

    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.ws = new WebSocket(`${scheme}//${location.host}/console/call`);
    this.ws.binaryType = "arraybuffer";
    this.ws.onmessage = (e) => this.receive(JSON.parse(e.data));
    this.ws.onclose = () => this.stop();
    this.worklet.port.onmessage = (e) => {
      if (this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(e.data);
        this.stats.framesSent += 1;
      }
    };
  }

  receive(event) {
    if (event.event === "call") this.onCall(event.callId);
    else if (event.event === "media") this.play(event.payload);
    else if (event.event === "mark") this.mark(event.name);
    else if (event.event === "clear") this.clear();
    else if (event.event === "error") this.onEnd(event.message);
  }

  play(payload) {
    const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
    const buffer = this.speaker.createBuffer(1, bytes.length, 8000);
    const data = buffer.getChannelData(0);
    for (let i = 0; i < bytes.length; i++) data[i] = ULAW[bytes[i]];
    const node = this.speaker.createBufferSource();
    node.buffer = buffer;
    node.connect(this.analyser);
    const now = this.speaker.currentTime;
    if (this.nextTime < now + 0.02) this.nextTime = now + 0.06; // a small jitter buffer
    node.start(this.nextTime);
    this.nextTime += buffer.duration;
    this.sources.add(node);
    this.stats.samplesReceived += bytes.length;
    node.onended = () => {
      if (this.sources.delete(node)) this.stats.samplesPlayed += bytes.length;
    };
  }

  mark(name) {
    const wait = Math.max(0, this.nextTime - this.speaker.currentTime) * 1000;
    this.marks.set(name, setTimeout(() => this.echo(name), wait));
  }

  echo(name) {
    this.marks.delete(name);
    if (this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ event: "mark", name }));
      this.stats.marks += 1;
    }
  }

  /** Barge-in: stop what is playing and queued; pending marks are echoed at once. */
  clear() {
    this.stats.clears += 1;
    this.drop();
    for (const [name, timer] of this.marks) {
      clearTimeout(timer);
      this.echo(name);
    }
  }

  drop() {
    for (const node of this.sources) {
      node.onended = null;
      try { node.stop(); } catch { /* not started yet */ }
    }
    this.sources.clear();
    if (this.speaker) this.nextTime = this.speaker.currentTime;
  }

  /** The output level now (RMS of what the analyser sees). */
  level() {
    if (!this.analyser) return 0;
    const data = new Float32Array(this.analyser.fftSize);
    this.analyser.getFloatTimeDomainData(data);
    let sum = 0;
    for (const v of data) sum += v * v;
    return Math.sqrt(sum / data.length);
  }

  get playing() { return this.sources.size > 0; }

  hangUp() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ event: "stop" }));
      this.ws.close(1000);
    }
    this.stop();
  }

  stop() {
    if (this.stopped) return;
    this.stopped = true;
    this.drop();
    for (const timer of this.marks.values()) clearTimeout(timer);
    this.marks.clear();
    this.stream?.getTracks().forEach((t) => t.stop());
    this.mic?.close();
    this.speaker?.close();
    this.onEnd(null);
  }
}
