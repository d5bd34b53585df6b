"""The tutorial's tests (docs/tutorial.md): the onboarding workflow, in this process, on a fake
clock (a day of sleep and a week of waiting take milliseconds).

    pytest examples/test_tutorial.py
"""

from __future__ import annotations

# --8<-- [start:tests]
import pytest
from tutorial import Onboarding, create_account

from raydo import InvalidParamsError
from raydo.testing import LocalEnv, introspect


def test_a_user_who_rates_us(raydo_test_env: LocalEnv) -> None:
    onboarding = raydo_test_env.workflow(Onboarding)
    with introspect(onboarding, "ana") as ana:
        ana.mock_event("feedback", {"stars": 4})
        onboarding.create(id="ana", params={"email": "ana@example.com"}).result()
        output = ana.get_output().result()
    assert output == {
        "account": create_account("ana@example.com")["id"],
        "plan": "free",
        "stars": 4,
    }


def test_a_user_who_never_answers(raydo_test_env: LocalEnv) -> None:
    onboarding = raydo_test_env.workflow(Onboarding)
    with introspect(onboarding, "bo") as bo:
        onboarding.create(id="bo", params={"email": "bo@example.com", "plan": "pro"}).result()
        assert bo.get_output().result()["stars"] is None  # 1 day + 7 days skipped


def test_the_mail_is_retried(raydo_test_env: LocalEnv) -> None:
    onboarding = raydo_test_env.workflow(Onboarding)
    with introspect(onboarding, "cy") as cy:
        cy.mock_step_error("send welcome mail", ConnectionError("smtp down"), times=2)
        onboarding.create(id="cy", params={"email": "cy@example.com"}).result()
        status = cy.wait_for_status("complete").result()
    mail = next(s for s in status.steps if s.name == "send welcome mail")
    assert mail.attempts == 3


def test_bad_params_are_refused(raydo_test_env: LocalEnv) -> None:
    onboarding = raydo_test_env.workflow(Onboarding)
    with pytest.raises(InvalidParamsError) as caught:
        onboarding.create(params={"email": "dee@example.com", "plan": "gold"}).result()
    assert caught.value.field == "plan"


# --8<-- [end:tests]
