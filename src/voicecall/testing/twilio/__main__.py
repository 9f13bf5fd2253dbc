"""`python -m voicecall.testing.twilio` runs the simulator."""

from voicecall.testing.twilio.standalone import main

main()
