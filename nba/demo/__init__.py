"""The demo world, its traffic driver and `nba demo`."""

# Simulated callers at once. The driver shares the machine with the stack, and each
# caller's requests wait in the driver's own event loop for the others': on a 2-core
# machine 8 callers served no more decisions than 2 (150-197 against 142-169 a second,
# three alternated pairs of `nba demo --duration 15`) while the client's p50 rose from
# 4.4-5.4 ms to 15-20 ms, a figure of the driver rather than of the engine.
DEMO_CALLERS = 2
