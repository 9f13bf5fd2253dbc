"""`python -m voicecall.testing.twilio` runs the simulator."""

from voicecall.testing.twilio.simulator import main

main()
