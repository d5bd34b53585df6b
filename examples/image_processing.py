"""Image processing with a human in the loop (Cloudflare's "post-process user-generated content").

    fetch image -> describe image ("AI") -> tag image -> wait for event "approved" -> publish

The instance waits for a moderator's approval with `step.wait_for_event`; while it waits it holds no
process, only a timer for the timeout. `main()` plays the moderator and sends the event with
`instance.send_event(type="approved", payload=...)`. If no approval arrives before the timeout, the
wait raises WaitForEventTimeoutError, which the workflow catches to archive the image instead.

The "AI" is a deterministic fake (a hash picks the words), so replays and tests see the same text.

    python examples/image_processing.py [STORAGE_DIR]
"""

from __future__ import annotations

import hashlib
import sys
import time
import uuid
from typing import Any

import raydo
from raydo import WaitForEventTimeoutError, WorkflowEntrypoint, WorkflowEvent, WorkflowStep

_SUBJECTS = ["a red fox", "a lighthouse", "two cyclists", "a bowl of ramen", "a mountain lake"]
_SETTINGS = ["at dusk", "in the rain", "under a clear sky", "in a busy street", "in soft light"]
_STYLES = ["wide-angle photo", "close-up", "film photograph", "aerial shot", "long exposure"]


# -- the outside world (fakes) -------------------------------------------------------------------


def fetch_image(key: str) -> dict[str, Any]:
    """Stand-in for reading the upload from object storage: size and digest of the bytes."""
    body = hashlib.sha256(key.encode()).digest() * 4096  # 128 KiB of "pixels"
    return {
        "key": key,
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "content_type": "image/jpeg",
    }


def describe(image: dict[str, Any]) -> str:
    """Stand-in for an image-to-text model: same image, same description."""
    digest = bytes.fromhex(image["sha256"])
    subject = _SUBJECTS[digest[0] % len(_SUBJECTS)]
    setting = _SETTINGS[digest[1] % len(_SETTINGS)]
    style = _STYLES[digest[2] % len(_STYLES)]
    return f"A {style} of {subject} {setting}."


def tags_for(description: str) -> list[str]:
    stop = {"a", "an", "of", "the", "in", "at", "under", "two"}
    words = description.lower().rstrip(".").replace("-", " ").split()
    return sorted({w for w in words if w not in stop})


# -- the workflow --------------------------------------------------------------------------------


class ImageProcessingWorkflow(WorkflowEntrypoint):
    """params: {"key": "uploads/cat.jpg", "approval_timeout": duration (default "1 hour")}"""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> dict[str, Any]:
        key = event.payload["key"]
        image = await step.do("fetch image", lambda: fetch_image(key))
        description = await step.do(
            "describe image",
            lambda: describe(image),
            # Model endpoints are rate limited: back off harder than the default.
            retries={"limit": 5, "delay": "2 seconds", "backoff": "exponential"},
        )
        tags = await step.do("tag image", lambda: tags_for(description))

        try:
            approval = await step.wait_for_event(
                "approval",
                type="approved",
                timeout=event.payload.get("approval_timeout", "1 hour"),
            )
        except WaitForEventTimeoutError:
            # Nobody looked at it in time: keep it private. The timeout is recorded, so a replay
            # takes this branch again without waiting.
            archived = await step.do("archive image", lambda: f"archive/{key}")
            return {"key": key, "published": False, "archived_as": archived}

        reviewer = approval.payload.get("by", "unknown")
        caption = approval.payload.get("caption") or description
        url = await step.do(
            "publish", lambda: f"https://cdn.example.com/{image['sha256'][:16]}.jpg"
        )
        return {
            "key": key,
            "published": True,
            "url": url,
            "caption": caption,
            "tags": tags,
            "approved_by": reviewer,
        }


def wait_for_status(inst: raydo.WorkflowInstance, status: str, timeout: float = 30) -> None:
    """Poll until the instance reaches `status` (here: `waiting`, i.e. parked on the approval)."""
    deadline = time.monotonic() + timeout
    while (current := inst.status().result().status) != status:
        if current.finished or time.monotonic() > deadline:
            raise RuntimeError(f"instance {inst.id} is {current}, expected {status}")
        time.sleep(0.1)


def main(storage: str | None = None) -> raydo.StatusInfo:
    raydo.init(storage)
    images = raydo.workflow(ImageProcessingWorkflow, name="image-processing", concurrency=2)
    inst = images.create(
        id=f"img-{uuid.uuid4().hex[:8]}", params={"key": "uploads/holiday-0042.jpg"}
    ).result()
    print(f"created {inst.id}")

    wait_for_status(inst, "waiting")
    st = inst.status(steps=True).result()
    description = next(s.output for s in st.steps if s.name == "describe image")
    print(f"{inst.id}: {st.status}, awaiting approval of: {description!r}")

    # The moderator approves. The event is stored first, so it is not lost even if the instance
    # has not reached its wait_for_event yet.
    inst.send_event(type="approved", payload={"by": "moderator-ana", "caption": None}).result()
    print(f"{inst.id}: sent 'approved'")

    st = inst.wait(timeout=30).result()
    print(f"final status: {st.status}")
    print(f"output: {st.output}")
    raydo.shutdown()
    return st


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
