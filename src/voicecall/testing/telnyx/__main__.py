"""`python -m voicecall.testing.telnyx` runs the simulator."""

from voicecall.testing.telnyx.standalone import main

main()
