"""Conformance of the embedded emulator with boto3, the official AWS SDK for
Python: every operation, the errors it raises, the stable-identity rules, the
SigV4 check, TokenDuration, and tokens verified with PyJWT against the served
JWKS, with the header and claims of real Cognito Identity tokens.

scripts/test starts `cognito-identity-gateway emulator` and sets EMULATOR_ENDPOINT.
"""

import json
import os
import time
import urllib.request
import uuid

import boto3
import botocore.config
import botocore.exceptions
import jwt
import pytest

ENDPOINT = os.environ["EMULATOR_ENDPOINT"]
DEV = "login.conformance.example"
ISSUER = "https://cognito-identity.amazonaws.com"
POOL_ARN_CLAIM = "https://cognito-identity.amazonaws.com/identity-pool-arn"
TAGS_CLAIM = "https://aws.amazon.com/tags"
# The fake account the emulator's pool ARNs name.
ACCOUNT = "000000000000"


def client(secret="test", key="test", **config):
    return boto3.client(
        "cognito-identity",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=botocore.config.Config(**config),
    )


def unsigned_client():
    from botocore import UNSIGNED
    from botocore.config import Config

    return boto3.client(
        "cognito-identity",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED),
    )


def code_of(excinfo):
    return excinfo.value.response["Error"]["Code"]


def status_of(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture
def pool():
    c = client()
    p = c.create_identity_pool(
        IdentityPoolName=f"conf {uuid.uuid4().hex[:8]}",
        AllowUnauthenticatedIdentities=True,
        DeveloperProviderName=DEV,
        SupportedLoginProviders={"graph.facebook.com": "app-1"},
    )
    yield p["IdentityPoolId"]
    try:
        c.delete_identity_pool(IdentityPoolId=p["IdentityPoolId"])
    except botocore.exceptions.ClientError:
        pass


def jwks():
    with urllib.request.urlopen(f"{ENDPOINT}/.well-known/jwks_uri") as reply:
        return json.load(reply)["keys"]


def jwks_key(token):
    kid = jwt.get_unverified_header(token)["kid"]
    return next(jwt.PyJWK(k) for k in jwks() if k["kid"] == kid).key


def claims_of(token, pool):
    """The claims of a token the served JWKS verifies, as Cognito signs them."""
    return jwt.decode(token, jwks_key(token), algorithms=["RS512"], audience=pool, issuer=ISSUER)


def test_pool_administration(pool):
    c = client()
    described = c.describe_identity_pool(IdentityPoolId=pool)
    assert described["DeveloperProviderName"] == DEV
    assert described["AllowUnauthenticatedIdentities"] is True
    assert described["SupportedLoginProviders"] == {"graph.facebook.com": "app-1"}
    ids = []
    token = None
    while True:
        page = c.list_identity_pools(MaxResults=1, **({"NextToken": token} if token else {}))
        ids += [p["IdentityPoolId"] for p in page["IdentityPools"]]
        token = page.get("NextToken")
        if not token:
            break
    assert pool in ids
    c.delete_identity_pool(IdentityPoolId=pool)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.describe_identity_pool(IdentityPoolId=pool)
    assert code_of(e) == "ResourceNotFoundException" and status_of(e) == 404


def test_developer_tokens_are_stable_jwts_honouring_token_duration(pool):
    c = client()
    first = c.get_open_id_token_for_developer_identity(
        IdentityPoolId=pool, Logins={DEV: "alice"}, TokenDuration=120
    )
    again = c.get_open_id_token_for_developer_identity(IdentityPoolId=pool, Logins={DEV: "alice"})
    other = c.get_open_id_token_for_developer_identity(IdentityPoolId=pool, Logins={DEV: "bob"})
    assert first["IdentityId"] == again["IdentityId"] != other["IdentityId"]
    assert first["IdentityId"].startswith("us-east-1:")
    claims = claims_of(first["Token"], pool)
    assert claims["sub"] == first["IdentityId"]
    assert claims["exp"] - claims["iat"] == 120
    assert "authenticated" in claims["amr"] and DEV in claims["amr"]
    default = claims_of(again["Token"], pool)
    assert default["exp"] - default["iat"] == 900


def test_get_id_and_open_id_token(pool):
    c = unsigned_client()
    anon = c.get_id(IdentityPoolId=pool)["IdentityId"]
    token = c.get_open_id_token(IdentityId=anon)
    claims = claims_of(token["Token"], pool)
    assert claims["exp"] - claims["iat"] == 600
    assert claims["amr"] == ["unauthenticated"]
    fb = c.get_id(IdentityPoolId=pool, Logins={"graph.facebook.com": "fb-token-1"})["IdentityId"]
    assert c.get_id(IdentityPoolId=pool, Logins={"graph.facebook.com": "fb-token-1"})["IdentityId"] == fb
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_open_id_token(IdentityId=fb)
    assert code_of(e) == "NotAuthorizedException" and status_of(e) == 403
    assert c.get_open_id_token(IdentityId=fb, Logins={"graph.facebook.com": "fb-token-1"})["IdentityId"] == fb


def test_credentials_for_a_developer_token(pool):
    token = client().get_open_id_token_for_developer_identity(IdentityPoolId=pool, Logins={DEV: "carol"})
    reply = unsigned_client().get_credentials_for_identity(
        IdentityId=token["IdentityId"], Logins={"cognito-identity.amazonaws.com": token["Token"]}
    )
    creds = reply["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA") and len(creds["SecretKey"]) == 40
    left = creds["Expiration"].timestamp() - time.time()
    assert 3500 < left <= 3600
    for bad in [token["Token"][:-4] + "AAAA", "not-a-jwt"]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            unsigned_client().get_credentials_for_identity(
                IdentityId=token["IdentityId"], Logins={"cognito-identity.amazonaws.com": bad}
            )
        assert code_of(e) == "NotAuthorizedException"


def test_tokens_are_signed_rs512_as_cognito_signs_them(pool):
    token = client().get_open_id_token_for_developer_identity(IdentityPoolId=pool, Logins={DEV: "judy"})["Token"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS512" and header["typ"] == "JWS" and header["kid"]
    key = next(k for k in jwks() if k["kid"] == header["kid"])
    assert (key["alg"], key["kty"], key["use"]) == ("RS512", "RSA", "sig")
    assert key["n"] and key["e"]
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(token, jwks_key(token), algorithms=["RS256"], audience=pool)


def test_developer_tokens_carry_cognitos_claims(pool):
    reply = client().get_open_id_token_for_developer_identity(IdentityPoolId=pool, Logins={DEV: "kate"})
    claims = claims_of(reply["Token"], pool)
    assert (claims["iss"], claims["sub"], claims["aud"]) == (ISSUER, reply["IdentityId"], pool)
    region, guid = pool.split(":")
    assert claims["amr"] == ["authenticated", DEV, f"{DEV}:{region}:{guid}:kate"]
    assert claims[POOL_ARN_CLAIM] == f"arn:aws:cognito-identity:{region}:{ACCOUNT}:identitypool/{pool}"
    assert TAGS_CLAIM not in claims


def test_unauthenticated_tokens_name_their_pool_too(pool):
    c = unsigned_client()
    anon = c.get_id(IdentityPoolId=pool)["IdentityId"]
    claims = claims_of(c.get_open_id_token(IdentityId=anon)["Token"], pool)
    assert claims["amr"] == ["unauthenticated"]
    assert claims[POOL_ARN_CLAIM] == f"arn:aws:cognito-identity:us-east-1:{ACCOUNT}:identitypool/{pool}"
    assert TAGS_CLAIM not in claims


def test_principal_tags_travel_as_sts_session_tags(pool):
    reply = client().get_open_id_token_for_developer_identity(
        IdentityPoolId=pool, Logins={DEV: "leo"}, PrincipalTags={"team": "blue", "level": "3"}
    )
    claims = claims_of(reply["Token"], pool)
    assert claims[TAGS_CLAIM] == {"principal_tags": {"team": ["blue"], "level": ["3"]}}


def test_get_open_id_token_takes_a_developer_token(pool):
    dev = client().get_open_id_token_for_developer_identity(
        IdentityPoolId=pool, Logins={DEV: "mallory"}, PrincipalTags={"team": "red"}
    )
    c = unsigned_client()
    reply = c.get_open_id_token(IdentityId=dev["IdentityId"], Logins={"cognito-identity.amazonaws.com": dev["Token"]})
    assert reply["IdentityId"] == dev["IdentityId"]
    claims = claims_of(reply["Token"], pool)
    assert claims["sub"] == dev["IdentityId"]
    assert claims["exp"] - claims["iat"] == 600
    assert claims["amr"] == claims_of(dev["Token"], pool)["amr"]
    assert claims[TAGS_CLAIM] == {"principal_tags": {"team": ["red"]}}
    # The new token buys credentials as the developer token does.
    creds = c.get_credentials_for_identity(
        IdentityId=dev["IdentityId"], Logins={"cognito-identity.amazonaws.com": reply["Token"]}
    )
    assert creds["Credentials"]["AccessKeyId"].startswith("ASIA")


def test_both_operations_check_a_developer_token_alike(pool):
    c = client()
    nina = c.get_open_id_token_for_developer_identity(IdentityPoolId=pool, Logins={DEV: "nina"})
    oscar = c.get_open_id_token_for_developer_identity(IdentityPoolId=pool, Logins={DEV: "oscar"})
    brief = c.get_open_id_token_for_developer_identity(IdentityPoolId=pool, Logins={DEV: "nina"}, TokenDuration=1)
    time.sleep(2.1)
    cases = [
        (oscar["IdentityId"], nina["Token"], "not for this identity"),
        (nina["IdentityId"], nina["Token"][:-4] + "AAAA", "signature"),
        (nina["IdentityId"], brief["Token"], "expired"),
        (nina["IdentityId"], "not-a-jwt", "Invalid login token"),
    ]
    u = unsigned_client()
    for identity, token, why in cases:
        errors = []
        for operation in (u.get_open_id_token, u.get_credentials_for_identity):
            with pytest.raises(botocore.exceptions.ClientError) as e:
                operation(IdentityId=identity, Logins={"cognito-identity.amazonaws.com": token})
            errors.append((code_of(e), status_of(e), e.value.response["Error"]["Message"]))
        assert errors[0] == errors[1], errors
        assert errors[0][:2] == ("NotAuthorizedException", 403) and why in errors[0][2], errors


def test_expired_tokens_are_refused(pool):
    token = client().get_open_id_token_for_developer_identity(
        IdentityPoolId=pool, Logins={DEV: "dave"}, TokenDuration=1
    )
    time.sleep(2.1)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        unsigned_client().get_credentials_for_identity(
            IdentityId=token["IdentityId"], Logins={"cognito-identity.amazonaws.com": token["Token"]}
        )
    assert code_of(e) == "NotAuthorizedException"
    assert "expired" in e.value.response["Error"]["Message"]


def test_linking_and_conflicts(pool):
    c = client()
    anon = c.get_id(IdentityPoolId=pool)["IdentityId"]
    linked = c.get_open_id_token_for_developer_identity(IdentityPoolId=pool, IdentityId=anon, Logins={DEV: "erin"})
    assert linked["IdentityId"] == anon
    again = c.get_open_id_token_for_developer_identity(IdentityPoolId=pool, Logins={DEV: "erin"})
    assert again["IdentityId"] == anon
    other = c.get_id(IdentityPoolId=pool)["IdentityId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_open_id_token_for_developer_identity(IdentityPoolId=pool, IdentityId=other, Logins={DEV: "erin"})
    assert code_of(e) == "DeveloperUserAlreadyRegisteredException" and status_of(e) == 400


def test_providers_the_pool_does_not_have_are_refused(pool):
    c = client()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_open_id_token_for_developer_identity(
            IdentityPoolId=pool, Logins={DEV: "frank", "other.developer.example": "frank"}
        )
    assert code_of(e) == "NotAuthorizedException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_id(IdentityPoolId=pool, Logins={"accounts.google.com": "x"})
    assert code_of(e) == "NotAuthorizedException"


def test_unauthenticated_access_needs_the_pool_to_allow_it():
    c = client()
    pool = c.create_identity_pool(IdentityPoolName="closed", AllowUnauthenticatedIdentities=False)["IdentityPoolId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_id(IdentityPoolId=pool)
    assert code_of(e) == "NotAuthorizedException"
    c.delete_identity_pool(IdentityPoolId=pool)


def test_validation_errors(pool):
    # botocore checks a few constraints itself; off, so the emulator's run.
    c = client(parameter_validation=False)
    cases = [
        lambda: c.get_id(IdentityPoolId="no-colon"),
        lambda: c.get_id(IdentityPoolId=pool, AccountId="12ab"),
        lambda: c.get_open_id_token_for_developer_identity(IdentityPoolId=pool, Logins={DEV: "x"}, TokenDuration=86401),
        lambda: c.get_open_id_token_for_developer_identity(
            IdentityPoolId=pool, Logins={DEV: "x"}, PrincipalTags={f"k{i}": "v" for i in range(51)}
        ),
        lambda: c.get_credentials_for_identity(IdentityId="us-east-1:ABC"),
        lambda: c.get_credentials_for_identity(IdentityId=f"{pool}", CustomRoleArn="arn:short"),
    ]
    for call in cases:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert code_of(e) == "InvalidParameterException" and status_of(e) == 400


def test_unknown_resources(pool):
    c = client()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_id(IdentityPoolId="us-east-1:00000000-0000-0000-0000-000000000000")
    assert code_of(e) == "ResourceNotFoundException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_open_id_token(IdentityId="us-east-1:00000000-0000-0000-0000-000000000000")
    assert code_of(e) == "ResourceNotFoundException"


def test_the_developer_operation_must_be_signed_correctly(pool):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client(secret="wrong").get_open_id_token_for_developer_identity(IdentityPoolId=pool, Logins={DEV: "x"})
    assert code_of(e) == "InvalidSignatureException" and status_of(e) == 403
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client(key="AKIAUNKNOWN").get_open_id_token_for_developer_identity(IdentityPoolId=pool, Logins={DEV: "x"})
    assert code_of(e) == "UnrecognizedClientException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        unsigned_client().get_open_id_token_for_developer_identity(IdentityPoolId=pool, Logins={DEV: "x"})
    assert code_of(e) == "MissingAuthenticationTokenException" and status_of(e) == 403


def put_faults(body):
    req = urllib.request.Request(f"{ENDPOINT}/_emulator/faults", data=json.dumps(body).encode(), method="PUT")
    with urllib.request.urlopen(req) as reply:
        return json.load(reply)


def test_injected_faults(pool):
    c = client(retries={"max_attempts": 1, "mode": "standard"})
    try:
        # A bucket of one call, refilled once every 100 s: one call passes.
        put_faults({"operations": {"GetId": {"rate_limit": 0.01}}})
        outcomes = []
        for _ in range(5):
            try:
                c.get_id(IdentityPoolId=pool)
                outcomes.append("ok")
            except botocore.exceptions.ClientError as err:
                outcomes.append(err.response["Error"]["Code"])
        assert outcomes == ["ok"] + ["TooManyRequestsException"] * 4
        put_faults({"operations": {"*": {"error_rate": 1.0}}})
        with pytest.raises(botocore.exceptions.ClientError) as e:
            c.get_id(IdentityPoolId=pool)
        assert code_of(e) == "InternalErrorException" and status_of(e) == 500
        put_faults({"drop_connections": True})
        with pytest.raises((botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)):
            c.get_id(IdentityPoolId=pool)
    finally:
        put_faults({})
    assert c.get_id(IdentityPoolId=pool)["IdentityId"]


def test_a_token_only_buys_credentials_for_its_own_identity(pool):
    c = client()
    alice = c.get_open_id_token_for_developer_identity(IdentityPoolId=pool, Logins={DEV: "grace"})
    bob = c.get_open_id_token_for_developer_identity(IdentityPoolId=pool, Logins={DEV: "heidi"})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        unsigned_client().get_credentials_for_identity(
            IdentityId=bob["IdentityId"], Logins={"cognito-identity.amazonaws.com": alice["Token"]}
        )
    assert code_of(e) == "NotAuthorizedException"


def test_a_public_login_linked_elsewhere_is_a_conflict(pool):
    c = unsigned_client()
    first = c.get_id(IdentityPoolId=pool, Logins={"graph.facebook.com": "fb-ivan"})["IdentityId"]
    other = c.get_id(IdentityPoolId=pool)["IdentityId"]
    assert other != first
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_open_id_token(IdentityId=other, Logins={"graph.facebook.com": "fb-ivan"})
    assert code_of(e) == "ResourceConflictException" and status_of(e) == 409


def test_cognito_quota_preset_and_latency(pool):
    req = urllib.request.Request(f"{ENDPOINT}/_emulator/faults/presets/cognito-default", method="PUT")
    try:
        with urllib.request.urlopen(req) as reply:
            settings = json.load(reply)
        limits = {op: f["rate_limit"] for op, f in settings["operations"].items()}
        assert limits == {
            "GetId": 25,
            "GetOpenIdToken": 200,
            "GetCredentialsForIdentity": 200,
            "GetOpenIdTokenForDeveloperIdentity": 50,
        }
        put_faults({"operations": {"GetId": {"latency_ms": 300}}})
        started = time.monotonic()
        client().get_id(IdentityPoolId=pool)
        assert time.monotonic() - started >= 0.3
    finally:
        put_faults({})
