//! RTP on the direct path: a frame cut into payloads once for every viewer, and per viewer the
//! header stamped (sequence, timestamp, VP8/VP9 picture id, transport-wide sequence) before the
//! packet is protected and sent.

use super::*;
use crate::webrtc::sink::{Delivery, MediaSink};

/// Cuts a frame into RTP payloads, the same for every viewer. VP8 and VP9 picture ids are each
/// viewer's own and are written per packet ([`DirectTrack::build`]), so VP8 is cut without one.
pub(super) fn cut(codec: Codec, data: &Bytes) -> Vec<Bytes> {
    let mtu = RTP_MTU - RTP_HEADER;
    let payloads = match codec {
        Codec::H264 => rtc::rtp::codec::h264::H264Payloader::default().payload(mtu, data),
        Codec::Vp8 => rtc::rtp::codec::vp8::Vp8Payloader::default().payload(mtu - VP8_PICTURE_ID_BYTES, data),
        Codec::Vp9 => rtc::rtp::codec::vp9::Vp9Payloader::default().payload(mtu, data),
        Codec::Av1 => rtc::rtp::codec::av1::Av1Payloader::default().payload(mtu, data),
        Codec::Opus => rtc::rtp::codec::opus::OpusPayloader.payload(mtu, data),
    };
    payloads.unwrap_or_else(|error| {
        tracing::debug!(%error, codec = codec.name(), "frame not packetized");
        Vec::new()
    })
}

/// The extension bytes a VP8 payload descriptor takes for a 15-bit picture id.
pub(super) const VP8_PICTURE_ID_BYTES: usize = 3;

/// Writes `payload`, with `picture_id` in its VP8 or VP9 payload descriptor, after `out`'s header.
pub(super) fn put_payload(codec: Codec, payload: &[u8], picture_id: u16, out: &mut BytesMut) {
    let picture_id = picture_id | 0x8000;
    match codec {
        // RFC 7741: X set in the first byte, then an extension byte with I set and the M-form
        // (15-bit) picture id. The payloader wrote a descriptor of one byte.
        Codec::Vp8 if !payload.is_empty() => {
            out.put_u8(payload[0] | 0x80);
            out.put_u8(0x80);
            out.put_u16(picture_id);
            out.extend_from_slice(&payload[1..]);
        }
        // The payloader always writes I and an M-form picture id right after the first byte.
        Codec::Vp9 if payload.len() >= 3 && payload[0] & 0x80 != 0 => {
            out.put_u8(payload[0]);
            out.put_u16(picture_id);
            out.extend_from_slice(&payload[3..]);
        }
        _ => out.extend_from_slice(payload),
    }
}

impl DirectTrack {
    /// Sends one frame: its packets leave together. An error is this frame's alone (the socket
    /// refused it); the next may go.
    pub async fn send_frame(&self, frame: &Arc<Frame>) -> io::Result<()> {
        let payloads = frame.packets.get_or_cut(|| cut(self.codec, &frame.data)).clone();
        if payloads.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        let packets: Vec<SentPacket> = {
            let mut state = self.state.lock().expect("not poisoned");
            let timestamp = state
                .timestamp_offset
                .wrapping_add((frame.timestamp.as_secs_f64() * f64::from(self.clock_rate)).round() as u64 as u32);
            state.packets = state.packets.wrapping_add(payloads.len() as u32);
            let octets: usize = payloads.iter().map(Bytes::len).sum();
            state.octets = state.octets.wrapping_add(octets as u32);
            state.last = Some((timestamp, now));
            if self.codec.is_video() {
                state.since_keyframe.follow(frame);
            }
            let mut packets = Vec::with_capacity(payloads.len());
            state.number_frame(frame, payloads.len(), timestamp, &mut packets);
            state.record(&packets);
            packets
        };
        let path = self
            .path
            .upgrade()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the connection is closed"))?;
        path.send_packets(self, &packets, now).await
    }

    /// The answer to a keyframe request: the frames from the latest keyframe on, sent again as
    /// new frames (new sequence numbers, picture ids and timestamps) and recorded, so that a NACK
    /// can bring them back too; none when the request came less than
    /// [`KEYFRAME_RESEND_INTERVAL`] after the last one answered.
    ///
    /// Stored media has no encoder to ask for a new keyframe. A receiver that already decoded
    /// the latest one drops it if it comes again as itself (its frame id is behind the last
    /// decoded), so it would wait, frozen, for the next keyframe seconds later; as a new frame it
    /// is decoded at once, and the frames after it, sent again behind it, bring the picture back
    /// to where the stream is, whole. Their timestamps follow the last frame sent one tick apart,
    /// before the next frame's, so the receiver shows them at once and the stream's clock (and
    /// its sync with audio) stays as it was. Past the replay's bounds the keyframe goes alone: the
    /// picture moves again at once, from a reference the frames after it were not made from.
    pub(super) fn replay_from_keyframe(&self, now: Instant) -> Vec<SentPacket> {
        let mut state = self.state.lock().expect("not poisoned");
        if state
            .keyframe_resent
            .is_some_and(|at| now.duration_since(at) < KEYFRAME_RESEND_INTERVAL)
        {
            return Vec::new();
        }
        let Some((last_timestamp, _)) = state.last else {
            return Vec::new();
        };
        let frames = state.since_keyframe.frames.clone();
        let mut packets = Vec::new();
        for (index, frame) in frames.iter().enumerate() {
            let payloads = frame.packets.get_or_cut(|| cut(self.codec, &frame.data)).len();
            let timestamp = last_timestamp.wrapping_add(index as u32 + 1);
            state.number_frame(frame, payloads, timestamp, &mut packets);
        }
        if packets.is_empty() {
            return packets;
        }
        state.record(&packets);
        state.keyframe_resent = Some(now);
        state.frames_replayed += frames.len() as u64;
        packets
    }

    /// The header and plain packet (header and payload) of a sent packet, with its transport-wide
    /// sequence number as the extension of the given id.
    pub(super) fn build(&self, sent: &SentPacket, transport_cc: Option<(u8, u16)>) -> (rtc::rtp::Header, BytesMut) {
        let payloads = sent.frame.packets.get_or_cut(|| cut(self.codec, &sent.frame.data));
        let payload = &payloads[sent.chunk];
        let repair = self.rtx.zip(sent.rtx_sequence);
        let mut header = rtc::rtp::Header {
            version: 2,
            marker: sent.chunk + 1 == payloads.len() && self.codec.is_video(),
            payload_type: repair.map_or(self.payload_type, |(rtx, _)| rtx.payload_type),
            sequence_number: repair.map_or(sent.sequence, |(_, sequence)| sequence),
            timestamp: sent.timestamp,
            ssrc: repair.map_or(self.ssrc, |(rtx, _)| rtx.ssrc),
            ..Default::default()
        };
        if let Some((id, sequence)) = transport_cc {
            // Ids of the one-byte form (1–14) are what is negotiated here; another is left out.
            let _ = header.set_extension(id, Bytes::copy_from_slice(&sequence.to_be_bytes()));
        }
        let header_size = header.marshal_size();
        let mut plain = BytesMut::with_capacity(header_size + payload.len() + VP8_PICTURE_ID_BYTES + 16);
        plain.resize(header_size, 0);
        // The buffer has the header's own size.
        let _ = header.marshal_to(&mut plain[..]);
        if repair.is_some() {
            // RFC 4588: the repair payload opens with the original sequence number.
            plain.put_u16(sent.sequence);
        }
        put_payload(self.codec, payload, sent.picture_id, &mut plain);
        (header, plain)
    }
}

/// The direct path's sink: the RTP clock follows the frames' own timestamps, so a frame goes at
/// once. A frame the socket refused is lost as on the network (NACKs may bring its packets back);
/// the connection goes on.
impl MediaSink for DirectTrack {
    const HOLDS_FRAMES: bool = false;

    async fn send(&self, frame: &Arc<Frame>, _duration: Duration) -> Delivery {
        match self.send_frame(frame).await {
            Ok(()) => Delivery::Sent,
            Err(error) => {
                tracing::debug!(%error, "frame not sent");
                Delivery::Lost
            }
        }
    }
}
