"""Twilio Programmable Voice (+ Media Streams) adapter."""
