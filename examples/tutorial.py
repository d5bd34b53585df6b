"""The tutorial's workflow (docs/tutorial.md): onboard a new user.

Typed params (a pydantic model), two steps where the second needs the first's result (a DAG
step), a retry policy, a durable sleep, and an event that may or may not come.

    python examples/tutorial.py [STORAGE_DIR]
"""

from __future__ import annotations

import sys
from typing import Any, Literal

from pydantic import BaseModel

import raydo
from raydo import WaitForEventTimeoutError, WorkflowEntrypoint, WorkflowEvent, WorkflowStep


# --8<-- [start:workflow]
class Signup(BaseModel):
    email: str
    plan: Literal["free", "pro"] = "free"
    follow_up_after: str = "1 day"


def create_account(email: str) -> dict[str, Any]:
    """Your database call; here, a made-up account."""
    return {"id": sum(map(ord, email)) % 10_000, "email": email}


def send_mail(to: str, text: str) -> str:
    """Your mail API; an exception here is retried by the step's policy."""
    return f"sent to {to}: {text}"


class Onboarding(WorkflowEntrypoint[Signup]):
    async def run(self, event: WorkflowEvent[Signup], step: WorkflowStep) -> dict[str, Any]:
        signup = event.payload  # a Signup: create() validated it

        @step.do("create account")
        def account() -> dict[str, Any]:
            return create_account(signup.email)

        @step.do("send welcome mail", retries={"limit": 3, "delay": "10 seconds"})
        def welcome(account: dict[str, Any]) -> str:  # gets "create account"'s result
            return send_mail(signup.email, f"welcome! your account is {account['id']}")

        user = await account()
        await welcome()  # needs "create account": gets the result above; it does not run again
        await step.sleep("give them time", signup.follow_up_after)
        try:
            feedback = await step.wait_for_event("feedback", type="feedback", timeout="7 days")
            rating = feedback.payload["stars"]
        except WaitForEventTimeoutError:
            rating = None
        return {"account": user["id"], "plan": signup.plan, "stars": rating}


# --8<-- [end:workflow]


# --8<-- [start:main]
def main(storage: str | None = None) -> raydo.StatusInfo:
    raydo.init(storage)
    onboarding = raydo.workflow(Onboarding, name="onboarding")
    inst = onboarding.create(
        id="ana", params={"email": "ana@example.com", "follow_up_after": "2 seconds"}
    ).result()
    inst.send_event(type="feedback", payload={"stars": 5}).result()  # kept until the wait
    status = inst.wait(timeout=60, progress=True).result()
    print(inst.describe().result())
    raydo.shutdown()
    return status


# --8<-- [end:main]


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
