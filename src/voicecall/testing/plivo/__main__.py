"""`python -m voicecall.testing.plivo` runs the simulator."""

from voicecall.testing.plivo.standalone import main

main()
