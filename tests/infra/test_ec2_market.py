"""EC2 in the stack: machines reachable on the render port only, rented and ended only by tag."""

from __future__ import annotations

from typing import Any

from infra import definitions as d
from infra.cdk.ec2_market import LABEL_TAG, READ_ACTIONS
from tests.infra.conftest import Synth

P = d.PREFIX
# The roles whose code paths list offers, rent, read a machine's status or end one.
EXPECTED = {
    f"{P}-api": {"read"},
    f"{P}-dispatch": {"read"},
    f"{P}-prices": {"read"},
    f"{P}-provision": {"read", "rent", "end"},
    f"{P}-wait-ready": {"read"},
    f"{P}-render": {"read"},
    f"{P}-teardown": {"read", "end"},
    f"{P}-reaper": {"read", "end"},
    f"{P}-authorizer": set(),
    f"{P}-record": set(),
    f"{P}-webhooks": set(),
}


def _policies(synth: Synth) -> dict[str, dict[str, Any]]:
    """Managed policies by kind (the construct id: Read, Rent, End)."""
    found = {}
    for logical, resource in synth.resources("AWS::IAM::ManagedPolicy").items():
        for kind in ("Read", "Rent", "End"):
            if logical.startswith(f"Ec2Market{kind}"):
                found[kind.lower()] = resource
    return found


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return list(policy["Properties"]["PolicyDocument"]["Statement"])


def _actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def test_each_role_gets_exactly_the_ec2_access_its_code_path_needs(synth: Synth) -> None:
    policies = _policies(synth)
    assert set(policies) == {"read", "rent", "end"}
    assert {f.name for f in d.FUNCTIONS} == set(EXPECTED)
    for name, kinds in EXPECTED.items():
        function = synth.template["Resources"][synth.logical_id_of_function(name)]
        role = function["Properties"]["Role"]["Fn::GetAtt"][0]
        attached = {k for k, p in policies.items() if {"Ref": role} in p["Properties"]["Roles"]}
        assert attached == kinds, name


def test_reading_is_read_only_and_renting_and_ending_need_our_tag(synth: Synth) -> None:
    policies = _policies(synth)
    (read,) = _statements(policies["read"])
    assert _actions(read) == set(READ_ACTIONS)
    assert all(a.split(":")[1].startswith(("Describe", "Get")) for a in READ_ACTIONS)

    rent = {s["Sid"]: s for s in _statements(policies["rent"])}
    labelled = rent["RunOnlyLabelledInstancesAndVolumes"]
    assert _actions(labelled) == {"ec2:RunInstances"}
    assert labelled["Condition"] == {"StringLike": {f"aws:RequestTag/{LABEL_TAG}": "subc-*"}}
    assert _actions(rent["TagOnlyWhileRunning"]) == {"ec2:CreateTags"}
    assert rent["TagOnlyWhileRunning"]["Condition"] == {
        "StringEquals": {"ec2:CreateAction": "RunInstances"}
    }
    # the parts RunInstances needs carry no tag condition, and are no instance or volume
    parts = rent["RunInOurSecurityGroup"]
    assert "Condition" not in parts
    assert "instance/*" not in str(parts["Resource"]) and "volume/*" not in str(parts["Resource"])
    assert set(rent) == {
        "RunOnlyLabelledInstancesAndVolumes",
        "RunInOurSecurityGroup",
        "ResolveTheDeepLearningAmi",
        "TagOnlyWhileRunning",
    }
    assert _actions(rent["ResolveTheDeepLearningAmi"]) == {"ssm:GetParameters"}

    (end,) = _statements(policies["end"])
    assert _actions(end) == {"ec2:TerminateInstances"}
    assert end["Condition"] == {"StringLike": {f"ec2:ResourceTag/{LABEL_TAG}": "subc-*"}}


def test_machines_are_reachable_on_the_render_port_only_and_cost_nothing_idle(
    synth: Synth,
) -> None:
    (group,) = synth.resources("AWS::EC2::SecurityGroup").values()
    ingress = group["Properties"]["SecurityGroupIngress"]
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in ingress] == [("tcp", 7860, 7860)]
    assert synth.resources("AWS::EC2::NatGateway") == {}
    for name in EXPECTED:
        function = synth.template["Resources"][synth.logical_id_of_function(name)]
        variables = function["Properties"]["Environment"]["Variables"]
        assert {"SUBC_EC2_SECURITY_GROUP_ID", "SUBC_EC2_SUBNETS"} <= set(variables), name
