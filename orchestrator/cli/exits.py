"""Exit codes: one meaning each, the same for every command, so scripts can rely on them.

0  done
1  failed: something is broken (the database, VTEX unreachable, an internal error); trying
   again later may work
2  usage: the command line or the configuration is wrong
3  refused: understood, but not done (invalid input, or not allowed for that order now)
4  nothing to do (an empty input, no order matched)
5  stuck orders found (`status --fail-on-stuck`)
6  finished with failed orders left (`run --until-done`)
7  stopped because VTEX rejects the credentials (`run --until-done`)
"""

from __future__ import annotations

OK = 0
FAILED = 1
USAGE = 2
REFUSED = 3
NOTHING_TO_DO = 4
STUCK_FOUND = 5
FAILURES_LEFT = 6
PAUSED = 7
INTERRUPTED = 130
