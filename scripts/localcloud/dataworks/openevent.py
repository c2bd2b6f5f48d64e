"""DataWorks OpenEvent for the emulator: a run that ends in Failure publishes its failure event, or loses it.

`OpenEvent(emulator, deliver).fail(instance_id)` ends the instance's current run as Failure
(the emulator's `finish`, or a freshly seeded failed instance as it is) and publishes the
status-change event DataWorks sends (FACTS section 1: `data.taskId` is the instance id,
`status` 5, `finishTime`) through `deliver`, e.g. an EventBridge rule's `deliver`.

The "event lost" fault: `lose(ids)` or `lose_ratio(ratio, seed)` makes those failures publish
nothing, as when the rule's pattern does not match, OpenEvent is off or points at another bus,
EventBridge or FC gave up, or the function was being redeployed. `lost` lists what was lost:
only the sweep can find those.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable


class OpenEvent:
    def __init__(self, emulator, deliver: Callable[[dict], object], account_id: str = "1877700012345678"):
        self.emulator = emulator
        self.deliver = deliver
        self.account_id = account_id
        self.lost: list[int] = []
        self.published: list[int] = []
        self._lose: set[int] = set()
        self._ratio = 0.0
        self._random = random.Random(0)
        self._lock = threading.Lock()
        self._count = 0

    def lose(self, ids) -> None:
        """The failure events of these instances are lost."""
        self._lose |= set(ids)

    def lose_ratio(self, ratio: float, seed: int = 0) -> None:
        """Each failure event is lost with probability `ratio` (a seeded draw: the same every run)."""
        if not 0 <= ratio <= 1:
            raise ValueError(f"ratio must be 0..1, got {ratio}")
        self._ratio, self._random = ratio, random.Random(seed)

    def fail(self, instance_id: int, finish: bool = True):
        """End the instance's running run as Failure (unless `finish` is False: it already failed)
        and publish its event unless the fault loses it. Returns what `deliver` returned, or None."""
        backend = self.emulator.backend
        inst = backend.finish(instance_id, "Failure") if finish else backend.instance(instance_id)
        with self._lock:
            self._count += 1
            lost = instance_id in self._lose or (self._ratio and self._random.random() < self._ratio)
            (self.lost if lost else self.published).append(instance_id)
        if lost:
            return None
        return self.deliver(self.event(inst))

    def event(self, inst) -> dict:
        """The CloudEvent DataWorks publishes for the instance's failed run."""
        finished = inst.finished_time or int(time.time() * 1000)
        return {
            "id": f"openevent-{inst.id}-run-{inst.run_number}",
            "source": "acs.dataworks",
            "specversion": "1.0",
            "subject": f"acs:dataworks:cn-hangzhou:{self.account_id}:{inst.project_id}/{inst.id}",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(finished / 1000)),
            "type": "dataworks:InstanceStatusChanges:InstanceStatusChanges",
            "datacontenttype": "application/json;charset=utf-8",
            "aliyunaccountid": self.account_id,
            "aliyunpublishtime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(finished / 1000)),
            "aliyuneventbusname": "dataworks-events",
            "aliyunregionid": "cn-hangzhou",
            "data": {
                "eventCode": "instance-status-changes",
                "taskId": inst.id,
                "nodeId": inst.task_id,
                "appId": inst.project_id,
                "status": 5,
                "dagType": 0,
                "taskType": 0,
                "createTime": inst.create_time,
                "modifyTime": finished,
                "beginRunningTime": inst.started_time,
                "finishTime": finished,
            },
        }
