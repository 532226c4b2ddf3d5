#!/usr/bin/env python3
"""A small speech server for Outdial's tests: the Vosk server protocol (alphacep/vosk-server,
websocket/asr_server.py) in front of PocketSphinx and the US English model its wheel ships.

    vosk_server.py [--host 127.0.0.1] [--port 0]

Prints its URL (ws://host:port) on the first line of stdout once the model is loaded, then
serves until killed or until its stdin closes (so it dies with the test that started it).

Protocol, as Vosk's server speaks it:
- a text message {"config": {...}} sets `sample_rate` (8000 or 16000), `words` (word list with
  `conf`, `start`, `end` in results) and `phrase_list`; it is not answered;
- each binary message (16-bit little-endian mono PCM) is answered with {"partial": "..."};
- the text {"eof" : 1} is answered with the final {"text": "...", "result": [...]}, and the
  connection ends. There are no results before eof (no endpointing) and no alternatives.

PocketSphinx's en-us model wants 16 kHz, with energy up to 6.8 kHz: 8 kHz audio is doubled by
linear interpolation (its images above 4 kHz suit the model better than a clean low-pass, which
was measured to recognize less), and Gaussian noise (sigma 30, about -60 dBFS) is added so
digital silence never reaches the decoder. On 8 kHz speech from espeak-ng its language model
gets few words right, so a `phrase_list` becomes a JSGF grammar: the utterance is one of the
phrases (Vosk instead builds a bigram model from them). Words outside the model's dictionary,
and `[unk]`, are left out.
"""

import argparse
import array
import asyncio
import json
import os
import random
import sys
import threading

import pocketsphinx
from websockets.asyncio.server import serve

MODEL_RATE = 16000
NOISE_SIGMA = 30
EOF = '{"eof" : 1}'


class Recognition:
    """One connection's decoder."""

    def __init__(self, config):
        self.rate = int(float(config.get("sample_rate", 8000)))
        if self.rate not in (8000, MODEL_RATE):
            raise ValueError(f"sample_rate {self.rate} is not supported (8000 or 16000)")
        self.words = bool(config.get("words", False))
        self.decoder = pocketsphinx.Decoder(pocketsphinx.Config(samprate=MODEL_RATE, loglevel="FATAL", bestpath=True))
        grammar = self.grammar(config.get("phrase_list") or [])
        if grammar:
            self.decoder.add_jsgf_string("phrases", grammar)
            self.decoder.activate_search("phrases")
        self.noise = random.Random(0)
        self.last = 0
        self.decoder.start_utt()

    def grammar(self, phrases):
        known = []
        for phrase in phrases:
            words = [w for w in str(phrase).lower().split() if w != "[unk]"]
            if words and all(self.decoder.lookup_word(w) is not None for w in words):
                known.append(" ".join(words))
        if not known:
            return None
        return "#JSGF V1.0;\ngrammar phrases;\npublic <utterance> = ( %s );\n" % " | ".join(known)

    def to_model(self, pcm):
        samples = array.array("h")
        samples.frombytes(pcm[: len(pcm) // 2 * 2])
        if sys.byteorder == "big":
            samples.byteswap()
        out = array.array("h")
        gauss = self.noise.gauss
        for s in samples:
            if self.rate == 8000:
                # Between the previous sample and this one, then this one.
                out.append(clip((self.last + s) // 2 + int(gauss(0, NOISE_SIGMA))))
                self.last = s
            out.append(clip(s + int(gauss(0, NOISE_SIGMA))))
        return out.tobytes()

    def accept(self, pcm):
        self.decoder.process_raw(self.to_model(pcm))
        hyp = self.decoder.hyp()
        return json.dumps({"partial": hyp.hypstr if hyp else ""})

    def final(self):
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        text = hyp.hypstr if hyp else ""
        answer = {"text": text}
        if self.words and text:
            answer["result"] = [
                {"word": seg.word.split("(")[0], "conf": round(min(1.0, max(0.0, seg.prob)), 6),
                 "start": seg.start_frame / 100.0, "end": (seg.end_frame + 1) / 100.0}
                for seg in self.decoder.seg()
                # Not <s>, <sil>, [NOISE] and such fillers.
                if not seg.word.startswith(("<", "[", "+"))
            ]
        return json.dumps(answer)


def clip(x):
    return -32768 if x < -32768 else 32767 if x > 32767 else x


async def recognize(connection):
    loop = asyncio.get_running_loop()
    config = {}
    recognition = None
    async for message in connection:
        if isinstance(message, str):
            if message == EOF:
                if recognition is None:
                    recognition = await loop.run_in_executor(None, Recognition, config)
                await connection.send(await loop.run_in_executor(None, recognition.final))
                break
            if "config" in message:
                config.update(json.loads(message)["config"])
            continue
        if recognition is None:
            recognition = await loop.run_in_executor(None, Recognition, config)
        await connection.send(await loop.run_in_executor(None, recognition.accept, message))


def exit_when_stdin_closes():
    sys.stdin.buffer.read()
    os._exit(0)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    # Loads the model once, so a broken install fails here and not on the first call.
    Recognition({"sample_rate": 8000})
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    async with serve(recognize, args.host, args.port, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"ws://{args.host}:{port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
