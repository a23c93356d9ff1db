//! The WebRTC service playing stored media to real webrtc-rs receivers on loopback: the server's
//! offer answered (trickle ICE both ways) and a receiver's offer answered (WHEP's way); frames
//! counted, keyframe first, timestamps paced; limits, bad input and clean-up.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use model::content::{ContentService, ImportOptions};
use model::media::playback::BufferSettings;
use model::monitoring::LiveStats;
use model::notifications::{MockNotifier, NotificationType};
use model::stream_records::{MockStreamMetrics, StreamType};
use model::webrtc::{PlayRequest, Quality, Receiver, StreamSpec, WebRtcConfig, WebRtcHub, WebRtcLimits, WebRtcService};

use support::loopback::{Viewer, add, fixture, fixture_with, receive, spec, stream_request, wait_for, wait_for_async};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_offer_plays_every_frame_from_the_first_keyframe_paced() {
    plays_every_frame_from_the_first_keyframe_paced(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_stack_the_server_offer_plays_every_frame_from_the_first_keyframe_paced() {
    plays_every_frame_from_the_first_keyframe_paced(false).await;
}

async fn plays_every_frame_from_the_first_keyframe_paced(direct_media: bool) {
    let mut config = WebRtcConfig::default();
    config.peer.direct_media = direct_media;
    let f = fixture_with(config).await;
    let cid = add(&f.content, "vp8.ivf").await;
    let offer = f.hub.offer(PlayRequest::cid(cid)).await.unwrap();
    assert!(offer.sdp.contains("VP8"), "{}", offer.sdp);
    assert_eq!(offer.tracks[0].codec, "VP8");
    let created = Receiver::new([127, 0, 0, 1].into()).await.unwrap();
    let viewer = Viewer::join(&f.hub, offer, created).await;
    let receiver = viewer.receiver.clone();
    assert_eq!(f.hub.connections().len(), 1);
    assert_eq!(f.live.totals().active(StreamType::Webrtc), 1);

    // 30 frames at 15 fps: all of them, from the first keyframe, 6000 ticks apart.
    assert!(wait_for(|| receiver.frame_count() >= 30, Duration::from_secs(10)).await);
    let frames = receiver.frames();
    assert_eq!(frames.len(), 30, "{frames:?}");
    assert!(frames[0].keyframe);
    assert_eq!(frames.iter().filter(|f| f.keyframe).count(), 2);
    for pair in frames.windows(2) {
        let step = pair[1].rtp_timestamp.wrapping_sub(pair[0].rtp_timestamp);
        assert!((5999..=6001).contains(&step), "{frames:?}");
    }
    let spread = frames[29].arrived.duration_since(frames[0].arrived);
    assert!(spread >= Duration::from_millis(1500), "paced, not burst: {spread:?}");

    let stats = f.hub.stats(&viewer.pc_id).await.unwrap();
    assert_eq!(stats.transport.frames_sent, 30);
    assert_eq!(
        f.hub.connections()[0].frames_sent,
        30,
        "the list shows what each connection sent"
    );
    assert!(stats.transport.bandwidth_estimate_bps > 0.0);
    assert_eq!(stats.buffer.frames_sent, 30);
    let path = if direct_media { "direct" } else { "stack" };
    assert_eq!(stats.transport.media_path, path);
    assert!(stats.transport.packets_sent >= 30, "{stats:?}");

    f.hub.close(&viewer.pc_id).await.unwrap();
    assert!(f.hub.connections().is_empty());
    assert!(f.hub.streams().is_empty(), "the stream made for the connection is gone");
    assert_eq!(f.live.totals().active(StreamType::Webrtc), 0);
    let events = f.events.lock().unwrap().clone();
    for kind in [
        NotificationType::WebrtcConnectionCreated,
        NotificationType::WebrtcConnectionEstablished,
        NotificationType::WebrtcStreamStarted,
        NotificationType::WebrtcConnectionClosed,
    ] {
        assert!(events.contains(&kind), "{kind:?} in {events:?}");
    }
    assert!(matches!(
        f.hub.close(&viewer.pc_id).await,
        Err(model::Error::UnknownId { .. })
    ));
    viewer.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_offer_is_answered_with_candidates_and_audio_plays_with_video() {
    let f = fixture(WebRtcLimits::default()).await;
    let cid = add(&f.content, "h264-baseline-opus.mp4").await;
    let (receiver, _candidates) = Receiver::new([127, 0, 0, 1].into()).await.unwrap();
    let offer = receiver.offer(Duration::from_secs(2)).await.unwrap();
    let answer = f.hub.accept(PlayRequest::cid(cid), &offer).await.unwrap();
    assert!(answer.sdp.contains("a=candidate"), "{}", answer.sdp);
    receiver.accept_answer(&answer.sdp).await.unwrap();
    assert!(receiver.connected(Duration::from_secs(10)).await);
    assert!(
        wait_for(
            || {
                let frames = receiver.frames();
                frames.iter().any(|f| f.mime_type.eq_ignore_ascii_case("audio/opus"))
                    && frames
                        .iter()
                        .filter(|f| f.mime_type.eq_ignore_ascii_case("video/h264"))
                        .count()
                        >= 20
            },
            Duration::from_secs(10)
        )
        .await,
        "{:?}",
        receiver.frames()
    );
    let video: Vec<_> = receiver
        .frames()
        .into_iter()
        .filter(|f| f.mime_type.eq_ignore_ascii_case("video/h264"))
        .collect();
    assert!(video[0].keyframe, "H.264 starts on an IDR with SPS/PPS");
    let stats = f.hub.stats(&answer.pc_id).await.unwrap();
    assert_eq!(
        stats.transport.media_path, "direct",
        "answering, the server sends directly too"
    );
    f.hub.close(&answer.pc_id).await.unwrap();
    receiver.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_check_their_media_and_limits_are_enforced() {
    let f = fixture(WebRtcLimits {
        max_streams: 1,
        max_viewers_per_stream: 1,
        max_connections: 10,
    })
    .await;
    let vp8 = add(&f.content, "vp8.ivf").await;
    let aac = add(&f.content, "h264-aac.mp4").await;
    let high = add(&f.content, "h264-high-bframes.mp4").await;
    let refused = f.hub.create_stream(spec(aac)).await.unwrap_err().to_string();
    assert!(refused.contains("AAC"), "{refused}");
    let refused = f.hub.create_stream(spec(high)).await.unwrap_err().to_string();
    assert!(refused.contains("High"), "{refused}");
    // Played by CID, unplayable media is refused at once, and said so on the notifications.
    let refused = f.hub.offer(PlayRequest::cid(aac)).await.unwrap_err().to_string();
    assert!(refused.contains("AAC"), "{refused}");
    assert!(f.notifications.lock().unwrap().iter().any(|(kind, data)| {
        *kind == NotificationType::WebrtcError && data["error"].as_str().is_some_and(|e| e.contains("AAC"))
    }));
    let garbage = f
        .content
        .add(
            support::pieces(b"definitely not a video".to_vec(), 8),
            support::add_request(ImportOptions::default()),
        )
        .await
        .unwrap()
        .cid;
    assert!(matches!(
        f.hub.create_stream(spec(garbage)).await,
        Err(model::Error::Media(_))
    ));

    let stream = f.hub.create_stream(spec(vp8)).await.unwrap();
    assert!(!stream.adaptable);
    assert_eq!(stream.renditions.len(), 1);
    assert!(matches!(
        f.hub.create_stream(spec(vp8)).await,
        Err(model::Error::LimitReached(_))
    ));
    let request = stream_request(&stream.stream_id);
    let first = f.hub.offer(request.clone()).await.unwrap();
    assert!(matches!(f.hub.offer(request).await, Err(model::Error::LimitReached(_))));
    let change = f.hub.set_quality(&first.pc_id, Quality::High).await.unwrap();
    assert!(!change.adaptable);
    assert!(matches!(
        f.hub.answer("pc-unknown", "v=0").await,
        Err(model::Error::UnknownId { .. })
    ));
    assert!(f.hub.answer(&first.pc_id, "not sdp").await.is_err());
    f.hub.delete_stream(&stream.stream_id).await.unwrap();
    assert!(
        f.hub.connections().is_empty(),
        "deleting a stream closes its connections"
    );
    assert!(f.hub.streams().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_connects_is_closed_and_counted_out() {
    let (node, _) = support::node();
    let content: Arc<dyn ContentService> = Arc::new(node);
    let cid = add(&content, "vp8.ivf").await;
    let mut notifier = MockNotifier::new();
    notifier.expect_publish().returning(|_, _, _| ());
    let mut metrics = MockStreamMetrics::new();
    metrics.expect_record().times(1).returning(|_| ());
    let live = Arc::new(LiveStats::default());
    let hub = WebRtcHub::new(
        content,
        Arc::new(notifier),
        Arc::new(metrics),
        live.clone(),
        tokio::runtime::Handle::current(),
        WebRtcConfig {
            connect_timeout: Duration::from_millis(500),
            ..Default::default()
        },
    );
    let _offer = hub.offer(PlayRequest::cid(cid)).await.unwrap();
    assert_eq!(live.totals().active(StreamType::Webrtc), 1);
    // The connection leaves the list before its accounting ends and its stream retires.
    let counted_out =
        || hub.connections().is_empty() && live.totals().active(StreamType::Webrtc) == 0 && hub.streams().is_empty();
    assert!(wait_for(counted_out, Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_rendition_switch_happens_at_a_keyframe_without_a_gap() {
    let f = fixture(WebRtcLimits::default()).await;
    let vp8 = add(&f.content, "vp8.ivf").await;
    // The same media twice makes a two-rung ladder whose switch is easy to see: it happens at the
    // high rendition's next keyframe (frame 15), and the RTP clock runs on without a jump.
    let stream = f
        .hub
        .create_stream(StreamSpec {
            cid: vp8,
            renditions: vec![(Quality::Low, vp8), (Quality::High, vp8)],
            quality: Quality::Low,
            ice_servers: vec![],
            buffer: BufferSettings::default(),
            progressive: true,
            benchmark: true,
        })
        .await
        .unwrap();
    assert!(stream.adaptable);
    assert_eq!(stream.renditions.len(), 2);
    let (receiver, pc_id) = receive(&f.hub, stream_request(&stream.stream_id)).await;
    assert!(wait_for(|| receiver.frame_count() >= 3, Duration::from_secs(10)).await);
    let change = f.hub.set_quality(&pc_id, Quality::High).await.unwrap();
    assert_eq!(change.rendition, Quality::High);
    assert!(change.adaptable);
    assert!(wait_for(|| receiver.frame_count() >= 30, Duration::from_secs(10)).await);
    let frames = receiver.frames();
    assert_eq!(
        frames.len(),
        30,
        "no frame lost or doubled across the switch: {frames:?}"
    );
    for pair in frames.windows(2) {
        let step = pair[1].rtp_timestamp.wrapping_sub(pair[0].rtp_timestamp);
        assert!((5999..=6001).contains(&step), "{frames:?}");
    }
    assert!(frames[15].keyframe);
    let info = f.hub.stats(&pc_id).await.unwrap();
    assert_eq!(info.connection.rendition, Quality::High);
    assert!(
        f.events
            .lock()
            .unwrap()
            .contains(&NotificationType::WebrtcQualityChanged)
    );
    assert!(f.hub.stream(&stream.stream_id).unwrap().benchmark.is_some());
    f.hub.close(&pc_id).await.unwrap();
    receiver.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_probes_the_path_before_it_steps_up_and_steps_up_on_what_the_probe_showed() {
    let f = fixture(WebRtcLimits::default()).await;
    let clip = add(&f.content, "vp8-8s.webm").await;
    // Two rungs of the same media: the step up needs 30% over it, so a probe at 25% above that.
    let stream = f
        .hub
        .create_stream(StreamSpec {
            cid: clip,
            renditions: vec![(Quality::Low, clip), (Quality::High, clip)],
            ..spec(clip)
        })
        .await
        .unwrap();
    let (receiver, pc_id) = receive(&f.hub, stream_request(&stream.stream_id)).await;

    // The loopback carries the probe: what it measured counts, and auto steps up on it.
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let transport = f.hub.stats(&pc_id).await.unwrap().transport;
        if transport.probe_packets >= 10 && transport.bandwidth_probed_bps.is_some_and(|bps| bps > 0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "not probed: {transport:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stepped_up = || {
        f.notifications.lock().unwrap().iter().any(|(kind, data)| {
            *kind == NotificationType::WebrtcQualityChanged && data["to"] == "high" && data["reason"] == "auto"
        })
    };
    assert!(
        wait_for(stepped_up, Duration::from_secs(7)).await,
        "{:?}",
        f.notifications.lock().unwrap()
    );
    let stats = f.hub.stats(&pc_id).await.unwrap();
    assert_eq!(stats.connection.rendition, Quality::High);
    assert_eq!(stats.transport.media_path, "direct");
    f.hub.close(&pc_id).await.unwrap();
    receiver.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_track_plays_and_goes_with_its_connection() {
    let f = fixture(WebRtcLimits::default()).await;
    let video = add(&f.content, "vp8.ivf").await;
    let audio = add(&f.content, "opus.ogg").await;
    let offer = f.hub.offer(PlayRequest::cid(video)).await.unwrap();
    let created = Receiver::new([127, 0, 0, 1].into()).await.unwrap();
    let viewer = Viewer::join(&f.hub, offer, created).await;
    let receiver = viewer.receiver.clone();

    let (renegotiation, tracks) = f.hub.add_track(&viewer.pc_id, audio).await.unwrap();
    assert_eq!(tracks[0].kind, "audio");
    let answer = receiver.answer(&renegotiation).await.unwrap();
    f.hub.answer(&viewer.pc_id, &answer).await.unwrap();
    let opus = |r: &Receiver| {
        r.frames()
            .iter()
            .filter(|f| f.mime_type.eq_ignore_ascii_case("audio/opus"))
            .count()
    };
    assert!(wait_for(|| opus(&receiver) >= 10, Duration::from_secs(10)).await);
    assert_eq!(
        f.hub.totals().await.streams_playing,
        2,
        "the connection's stream and the added one"
    );

    f.hub.close(&viewer.pc_id).await.unwrap();
    assert!(
        wait_for_async(|| async { f.hub.totals().await.streams_playing == 0 }).await,
        "the added stream stops with its connection"
    );
    let stopped = || {
        f.notifications
            .lock()
            .unwrap()
            .iter()
            .filter(|(kind, data)| *kind == NotificationType::WebrtcStreamEnded && data["reason"] == "stopped")
            .count()
    };
    assert!(
        wait_for(|| stopped() >= 1, Duration::from_secs(5)).await,
        "the added stream, two seconds long, ended stopped: {:?}",
        f.notifications.lock().unwrap()
    );
    viewer.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_cannot_overshoot_the_limits() {
    let f = fixture(WebRtcLimits {
        max_streams: 1,
        max_viewers_per_stream: 10,
        max_connections: 1,
    })
    .await;
    let vp8 = add(&f.content, "vp8.ivf").await;
    let (a, b) = tokio::join!(f.hub.create_stream(spec(vp8)), f.hub.create_stream(spec(vp8)));
    let refused = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Err(model::Error::LimitReached(_))))
        .count();
    assert_eq!(
        (a.is_ok() as usize + b.is_ok() as usize, refused),
        (1, 1),
        "{a:?} {b:?}"
    );
    assert_eq!(f.hub.streams().len(), 1);

    let (a, b) = tokio::join!(f.hub.offer(PlayRequest::cid(vp8)), f.hub.offer(PlayRequest::cid(vp8)));
    let at_capacity = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Err(model::Error::AtCapacity(_))))
        .count();
    assert_eq!((a.is_ok() as usize + b.is_ok() as usize, at_capacity), (1, 1));
    assert_eq!(f.hub.connections().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_profile_h264_is_announced_and_sent_as_main() {
    let f = fixture(WebRtcLimits::default()).await;
    for (name, profile_level_id) in [("h264-main.mp4", "4d001f"), ("h264-baseline-opus.mp4", "42e01f")] {
        let cid = add(&f.content, name).await;
        let offer = f.hub.offer(PlayRequest::cid(cid)).await.unwrap();
        let created = Receiver::new([127, 0, 0, 1].into()).await.unwrap();
        let viewer = Viewer::join(&f.hub, offer, created).await;
        let receiver = viewer.receiver.clone();
        let h264 = |r: &Receiver| {
            r.frames()
                .into_iter()
                .filter(|f| f.mime_type.eq_ignore_ascii_case("video/h264"))
                .collect::<Vec<_>>()
        };
        assert!(
            wait_for(|| h264(&receiver).len() >= 3, Duration::from_secs(10)).await,
            "{name}"
        );
        // The payload type the frames came with maps to the file's profile in the negotiated SDP.
        let payload_type = h264(&receiver)[0].payload_type;
        let fmtp = viewer
            .answer
            .lines()
            .find(|line| line.starts_with(&format!("a=fmtp:{payload_type} ")))
            .unwrap_or_default()
            .to_owned();
        assert!(
            fmtp.contains(&format!("profile-level-id={profile_level_id}")),
            "{name}: {fmtp}"
        );
        f.hub.close(&viewer.pc_id).await.unwrap();
        viewer.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_vanishes_without_a_word_is_closed_after_the_ice_timeouts() {
    let mut f = fixture(WebRtcLimits::default()).await;
    f.hub = WebRtcHub::new(
        f.content.clone(),
        Arc::new({
            let mut notifier = MockNotifier::new();
            let seen = f.notifications.clone();
            notifier
                .expect_publish()
                .returning(move |kind, data, _| seen.lock().unwrap().push((kind, data.into_json())));
            notifier
        }),
        Arc::new({
            let mut metrics = MockStreamMetrics::new();
            metrics.expect_record().returning(|_| ());
            metrics
        }),
        f.live.clone(),
        tokio::runtime::Handle::current(),
        WebRtcConfig {
            peer: model::webrtc::PeerConfig {
                ice_disconnected_timeout: Duration::from_millis(500),
                ice_failed_timeout: Duration::from_millis(500),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let cid = add(&f.content, "vp8.ivf").await;
    let offer = f.hub.offer(PlayRequest::cid(cid)).await.unwrap();
    // The viewer lives on a runtime of its own: shutting that down ends it mid-stream, with no
    // DTLS close_notify and no RTCP goodbye, as a crashed or unplugged client would.
    let viewer_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let created = viewer_runtime
        .spawn(Receiver::new([127, 0, 0, 1].into()))
        .await
        .unwrap()
        .unwrap();
    let viewer = Viewer::join(&f.hub, offer, created).await;
    let receiver = viewer.receiver.clone();
    assert!(wait_for(|| receiver.frame_count() >= 3, Duration::from_secs(5)).await);
    viewer_runtime.shutdown_background();

    assert!(
        wait_for(|| f.hub.connections().is_empty(), Duration::from_secs(10)).await,
        "the server noticed the silence and closed the connection"
    );
    // The connection leaves the list first; its close, accounting and notice follow it.
    let closed = || {
        f.notifications
            .lock()
            .unwrap()
            .iter()
            .any(|(kind, data)| *kind == NotificationType::WebrtcConnectionClosed && data["reason"] == "failed")
    };
    assert!(
        wait_for(closed, Duration::from_secs(5)).await,
        "{:?}",
        f.notifications.lock().unwrap()
    );
    assert_eq!(f.live.totals().active(StreamType::Webrtc), 0);
    viewer.relays.iter().for_each(|r| r.abort());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_packets_are_sent_again_and_reports_flow_both_ways() {
    let f = fixture(WebRtcLimits::default()).await;
    let cid = add(&f.content, "vp8.ivf").await;
    let offer = f.hub.offer(PlayRequest::cid(cid)).await.unwrap();
    let lossy = Receiver::losing_one_in(5, [127, 0, 0, 1].into()).await.unwrap();
    let viewer = Viewer::join(&f.hub, offer, lossy).await;
    let receiver = viewer.receiver.clone();

    // The receiver loses one packet in five and asks for them again (NACK): they come late, over
    // the repair stream the receiver negotiated (RTX), and fill the gaps: nearly every frame is
    // whole and decodable.
    assert!(
        wait_for(|| receiver.late_packets() > 0, Duration::from_secs(5)).await,
        "no packet came again; {} frames",
        receiver.frame_count()
    );
    assert!(
        wait_for(|| receiver.frame_count() >= 25, Duration::from_secs(10)).await,
        "{}",
        receiver.frame_count()
    );
    let stats = f.hub.stats(&viewer.pc_id).await.unwrap();
    assert_eq!(stats.transport.media_path, "direct");
    assert_eq!(stats.transport.repair, "rtx");
    assert!(stats.transport.packets_retransmitted > 0, "{stats:?}");
    let playback = receiver.video_playback();
    assert!(
        playback.frames_decodable * 100 >= playback.frames_received * 95,
        "{playback:?}, {} frames given up",
        receiver.frames_given_up()
    );

    // Sender reports reached the receiver (a second apart): its receiver reports come back with
    // them, and give the round trip.
    let hub = f.hub.clone();
    let pc_id = viewer.pc_id.clone();
    assert!(
        wait_for_async(|| {
            let (hub, pc_id) = (hub.clone(), pc_id.clone());
            async move {
                let transport = hub.stats(&pc_id).await.unwrap().transport;
                transport.rtcp_rtt_ms.is_some() && transport.remote_jitter_ms.is_some()
            }
        })
        .await,
        "no receiver report answering a sender report"
    );
    viewer.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyframe_request_gets_the_frames_from_the_latest_keyframe_again_as_new_frames() {
    let f = fixture(WebRtcLimits::default()).await;
    let cid = add(&f.content, "vp8.ivf").await;
    let offer = f.hub.offer(PlayRequest::cid(cid)).await.unwrap();
    let viewer = Viewer::join(&f.hub, offer, Receiver::new([127, 0, 0, 1].into()).await.unwrap()).await;
    let receiver = viewer.receiver.clone();
    assert!(wait_for(|| receiver.frame_count() >= 5, Duration::from_secs(10)).await);
    let video = |r: &Receiver| {
        r.frames()
            .into_iter()
            .filter(|f| f.mime_type.starts_with("video/"))
            .collect::<Vec<_>>()
    };
    let before = video(&receiver);
    let latest = before
        .iter()
        .rposition(|f| f.keyframe)
        .expect("the viewer started on a keyframe");
    let newest = before.last().unwrap().rtp_timestamp;
    let asked = std::time::Instant::now();

    // A PLI: the latest keyframe comes again as a new frame (a timestamp past every frame sent,
    // which a receiver that decoded past the keyframe does not drop), well before the next
    // keyframe would, and the frames after it follow it, the same frames in the same order.
    assert!(receiver.request_keyframe().await.unwrap());
    let replayed = |r: &Receiver| {
        let frames = video(r);
        let Some(start) = frames.iter().position(|f| {
            f.arrived > asked
                && f.keyframe
                && f.bytes == before[latest].bytes
                && (f.rtp_timestamp.wrapping_sub(newest) as i32) > 0
        }) else {
            return Vec::new();
        };
        let first = frames[start].rtp_timestamp;
        frames[start..]
            .iter()
            .filter(|f| f.rtp_timestamp.wrapping_sub(first) < 1000)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        wait_for(
            || replayed(&receiver).len() >= before.len() - latest,
            Duration::from_secs(1)
        )
        .await,
        "not sent again within a second of the request: {:?}",
        replayed(&receiver)
    );
    // The whole burst is in: it may hold frames sent after `before` was taken.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let replay = replayed(&receiver);
    assert!(replay[0].keyframe, "{replay:?}");
    let original: Vec<usize> = before[latest..].iter().map(|f| f.bytes).collect();
    let again: Vec<usize> = replay.iter().map(|f| f.bytes).collect();
    assert_eq!(again[..original.len()], original[..], "{replay:?}");
    assert!(
        replay.windows(2).all(|w| w[1].rtp_timestamp == w[0].rtp_timestamp + 1),
        "{replay:?}"
    );
    assert!(replay.iter().all(|f| f.decodable), "{replay:?}");
    let stats = f.hub.stats(&viewer.pc_id).await.unwrap();
    assert!(stats.transport.packets_retransmitted > 0, "{stats:?}");
    assert_eq!(stats.transport.frames_replayed, replay.len() as u64, "{stats:?}");

    // A second request at once is not answered (at most one every half second).
    assert!(receiver.request_keyframe().await.unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = f.hub.stats(&viewer.pc_id).await.unwrap();
    assert_eq!(
        stats.transport.frames_replayed,
        replay.len() as u64,
        "sent again twice in 200 ms"
    );
    viewer.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_connection_keeps_its_ice_consent_while_its_rtcp_bypasses_the_stack() {
    // ICE consent rests on STUN alone once the direct path reads the socket (both sides check
    // every 2 s). With 1.5 s to disconnected and 1.5 s more to failed, a connection whose STUN no
    // longer reached the stack would fail within 3 s.
    let f = fixture_with(WebRtcConfig {
        peer: model::webrtc::PeerConfig {
            ice_disconnected_timeout: Duration::from_millis(1500),
            ice_failed_timeout: Duration::from_millis(1500),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let cid = add(&f.content, "vp8.ivf").await;
    let offer = f.hub.offer(PlayRequest::cid(cid)).await.unwrap();
    let viewer = Viewer::join(&f.hub, offer, Receiver::new([127, 0, 0, 1].into()).await.unwrap()).await;
    let receiver = viewer.receiver.clone();
    assert!(wait_for(|| receiver.frame_count() >= 3, Duration::from_secs(5)).await);
    let before = f.hub.stats(&viewer.pc_id).await.unwrap();
    assert_eq!(before.transport.media_path, "direct");

    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        f.hub.connections().iter().any(|c| c.pc_id == viewer.pc_id),
        "{:?}",
        f.notifications.lock().unwrap()
    );
    let failed = f
        .notifications
        .lock()
        .unwrap()
        .iter()
        .any(|(kind, _)| *kind == NotificationType::WebrtcError);
    assert!(!failed, "{:?}", f.notifications.lock().unwrap());
    // The RTCP went on reaching the path meanwhile: the estimate's feedback kept coming.
    let after = f.hub.stats(&viewer.pc_id).await.unwrap();
    assert!(after.transport.rtcp_rtt_ms.is_some(), "{after:?}");
    viewer.leave().await;
}
