"""KIE's tasks: the timed tasks of the other task vendors, plus KIE's states and credits."""

from __future__ import annotations

from sandbox.timed_tasks import TaskTable, TimedTask

STARTING_CREDITS = 100_000
# Share of the latency spent in each state before `generating`.
WAITING_SHARE, QUEUING_SHARE = 0.1, 0.3


class KieTask(TimedTask):
    """A timed task that walks KIE's `waiting` → `queuing` → `generating` states."""

    def state_at(self, now: float) -> str:
        """The task's state at `now`, from its age alone."""
        elapsed = now - self.created_at
        if elapsed >= self.latency:
            return "fail" if self.fail else "success"
        if elapsed < self.latency * WAITING_SHARE:
            return "waiting"
        if elapsed < self.latency * QUEUING_SHARE:
            return "queuing"
        return "generating"

    def changed_at(self, now: float) -> float:
        """When the state seen at `now` began."""
        elapsed = now - self.created_at
        for boundary in (1.0, QUEUING_SHARE, WAITING_SHARE):
            if elapsed >= self.latency * boundary:
                return self.created_at + self.latency * boundary
        return self.created_at


class KieTasks(TaskTable[KieTask]):
    """The task table, pending callback timers and the account's credits."""

    def __init__(self) -> None:
        super().__init__()
        self.credits = STARTING_CREDITS

    def charge(self, amount: int) -> int:
        """Take credits; return what is left."""
        with self._lock:
            self.credits -= amount
            return self.credits

    def reset(self) -> None:
        """Forget every task, cancel callbacks not yet sent, refill the credits."""
        super().reset()
        with self._lock:
            self.credits = STARTING_CREDITS
