"""Speech in and out of a call: text-to-speech for telephony (`voicecall.speech.tts`)."""
