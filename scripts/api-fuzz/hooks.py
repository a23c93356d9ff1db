"""Schemathesis hooks: bodies of the media types it cannot make by itself, sent as they are
generated (SDP offers and trickle-ICE fragments as text, CARs as bytes), so the WHEP and CAR
parsers get its requests too."""

import schemathesis


@schemathesis.serializer("application/sdp", "application/trickle-ice-sdpfrag", "application/vnd.ipld.car")
def as_is(ctx, value):
    if isinstance(value, bytes):
        return {"data": value}
    return {"data": str(value).encode()}
