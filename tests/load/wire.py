"""What Vigil's Python clients (the Locust load test, the smoke test) send to ingest's Function
URL: Prometheus remote-write 1.0 bodies (protobuf WriteRequest, snappy block format) and SigV4
signatures for service `lambda`, as a deployed Function URL with AWS_IAM auth requires."""

import struct

import cramjam


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number, wire_type, payload):
    key = _varint((number << 3) | wire_type)
    if wire_type == 2:
        return key + _varint(len(payload)) + payload
    return key + payload


def _label(name, value):
    return _field(1, 2, name.encode()) + _field(2, 2, value.encode())


def write_request(series, at_ms):
    """A WriteRequest with one sample per series ((labels, value) pairs) at `at_ms`: what one
    scrape's batch looks like."""
    body = bytearray()
    for labels, value in series:
        ts = b"".join(_field(1, 2, _label(k, v)) for k, v in sorted(labels.items()))
        sample = _field(1, 1, struct.pack("<d", value)) + _field(2, 0, _varint(at_ms))
        body += _field(1, 2, ts + _field(2, 2, sample))
    return bytes(body)


def remote_write_body(series, at_ms):
    """The HTTP body of a remote-write request: the WriteRequest in snappy's block format."""
    return bytes(cramjam.snappy.compress_raw(write_request(series, at_ms)))


REMOTE_WRITE_HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def signed(method, url, body, headers, region=None):
    """`headers` with SigV4 authentication for a deployed Function URL (service lambda), from
    the usual AWS environment (credentials, and the region unless given)."""
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session = botocore.session.get_session()
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    region = region or session.get_config_variable("region")
    SigV4Auth(session.get_credentials(), "lambda", region).add_auth(request)
    return dict(request.headers)
