from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber

from helpers import HOST, TAG
from rotator import inventory
from rotator.model import ReportedKey

CREATED = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def iam():
    return boto3.client("iam", region_name="us-east-1")


def _detail(name, tags):
    return {
        "UserName": name,
        "UserId": "AIDA" + "X" * 16,
        "Arn": f"arn:aws:iam::123456789012:user/{name}",
        "Path": "/",
        "CreateDate": CREATED,
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }


def test_managed_users_across_pages_with_decoys(iam):
    with Stubber(iam) as stub:
        stub.add_response(
            "get_account_authorization_details",
            {
                "UserDetailList": [
                    _detail("gen3wf-gen3-example-org-1", {"name": TAG}),
                    _detail("gen3wf-gen3-example-org-9", {}),  # our prefix, not our tag
                    _detail("ci-deployer", {"name": TAG}),  # our tag, not our prefix
                ],
                "IsTruncated": True,
                "Marker": "page2",
            },
            {"Filter": ["User"]},
        )
        stub.add_response(
            "get_account_authorization_details",
            {
                "UserDetailList": [
                    _detail("gen3wf-gen3-example-org-1-bot", {"name": TAG, "team": "x"}),
                    _detail("gen3wf-other-example-org-1", {"name": "gen3wf-other-example-org"}),
                    _detail("gen3wf-gen3-example-org", {"name": TAG}),  # malformed
                ],
                "IsTruncated": False,
            },
            {"Filter": ["User"], "Marker": "page2"},
        )
        users, skipped = inventory.list_managed_users(iam, hostname=HOST)
        stub.assert_no_pending_responses()
    assert [(u.name, u.kind) for u in users] == [
        ("gen3wf-gen3-example-org-1", "user"),
        ("gen3wf-gen3-example-org-1-bot", "bot"),
    ]
    assert [s.name for s in skipped] == ["gen3wf-gen3-example-org"]


def test_access_keys_across_pages(iam):
    def meta(key_id, status):
        return {"UserName": "u", "AccessKeyId": key_id, "Status": status, "CreateDate": CREATED}

    with Stubber(iam) as stub:
        stub.add_response("list_access_keys", {"AccessKeyMetadata": [meta("AKIABBBBBBBBBBBBBBBB", "Active")], "IsTruncated": True, "Marker": "m"}, {"UserName": "u"})
        stub.add_response("list_access_keys", {"AccessKeyMetadata": [meta("AKIAAAAAAAAAAAAAAAAA", "Inactive")], "IsTruncated": False}, {"UserName": "u", "Marker": "m"})
        keys = inventory.list_access_keys(iam, "u")
        stub.assert_no_pending_responses()
    assert [(k.key_id, k.active) for k in keys] == [("AKIAAAAAAAAAAAAAAAAA", False), ("AKIABBBBBBBBBBBBBBBB", True)]


REPORT = """user,arn,user_creation_time,password_enabled,access_key_1_active,access_key_1_last_rotated,access_key_2_active,access_key_2_last_rotated
<root_account>,arn:aws:iam::1:root,2020-01-01T00:00:00+00:00,not_supported,false,N/A,false,N/A
alice,arn:aws:iam::1:user/alice,2020-01-01T00:00:00+00:00,false,true,2026-01-01T00:00:00+00:00,false,2026-02-01T10:00:00+00:00
bob,arn:aws:iam::1:user/bob,2020-01-01T00:00:00+00:00,false,false,N/A,false,N/A
"""


def test_parse_credential_report():
    keys = inventory.parse_credential_report(REPORT)
    assert keys["alice"] == (
        ReportedKey(True, datetime(2026, 1, 1, tzinfo=UTC)),
        ReportedKey(False, datetime(2026, 2, 1, 10, tzinfo=UTC)),
    )
    assert keys["bob"] == ()


def test_credential_report_waits_until_ready(iam):
    sleeps = []
    with Stubber(iam) as stub:
        stub.add_response("generate_credential_report", {"State": "STARTED"})
        stub.add_response("generate_credential_report", {"State": "INPROGRESS"})
        stub.add_response("generate_credential_report", {"State": "COMPLETE"})
        stub.add_response("get_credential_report", {"Content": REPORT.encode(), "ReportFormat": "text/csv"})
        keys = inventory.read_credential_report(iam, sleep=sleeps.append)
    assert set(keys) == {"<root_account>", "alice", "bob"}
    assert sleeps == [0.5, 1.0]


@pytest.mark.parametrize("code", ["Throttling", "AccessDenied", "ReportNotPresent"])
def test_credential_report_unavailable(iam, code):
    with Stubber(iam) as stub:
        stub.add_client_error("generate_credential_report", service_error_code=code, http_status_code=400)
        with pytest.raises(inventory.ReportUnavailable, match=code):
            inventory.read_credential_report(iam, sleep=lambda s: None)
