"""Test speech, made offline: a sentence spoken by Debian's espeak-ng, resampled by sox to what
Whisper takes (16 kHz mono, 16-bit). espeak's voice is robotic: whisper-base hears 7 of its 9 words."""

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

SENTENCE = "the quick brown fox jumps over the lazy dog"


def speak(directory: Path, sentence: str = SENTENCE) -> Path:
    """A 16 kHz mono WAV of `sentence` in `directory`."""
    for tool in ("espeak-ng", "sox"):
        assert shutil.which(tool), f"{tool} is Debian's {tool} package (make test installs it)"
    subprocess.run(["espeak-ng", "-w", directory / "espeak.wav", sentence], check=True, timeout=60)
    subprocess.run(["sox", directory / "espeak.wav", "-r", "16000", "-c", "1", "-b", "16", directory / "speech.wav"],
                   check=True, timeout=60)
    return directory / "speech.wav"


def words_heard(text: str, sentence: str = SENTENCE) -> int:
    """How many of the sentence's words a transcript holds."""
    heard = Counter(re.findall(r"[a-z]+", text.lower()))
    return sum((Counter(sentence.split()) & heard).values())
