//! N webrtc-rs receivers of one created stream over WHEP, on loopback: how many connect, how many
//! frames each gets, how many arrive late, and the stream's underflows. Prints one JSON line.
//! Usage: webrtc_load <server URL> <cid> <viewers> <seconds>

use std::sync::Arc;
use std::time::{Duration, Instant};

use model::webrtc::Receiver;
use serde_json::{Value, json};

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, server, cid, viewers, seconds] = args.as_slice() else {
        eprintln!("usage: webrtc_load <server URL> <cid> <viewers> <seconds>");
        std::process::exit(2);
    };
    let viewers: usize = viewers.parse().expect("viewers is a number");
    let seconds: u64 = seconds.parse().expect("seconds is a number");
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{server}/api/v1/webrtc/streams"))
        .json(&json!({"cid": cid, "buffer_size": 60}))
        .send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("JSON");
    let whep = created["whep_url"].as_str().expect("a stream was created").to_owned();
    let stream_id = created["stream_id"].as_str().unwrap().to_owned();

    // Join in waves of 16, each receiver offering over WHEP.
    let mut receivers: Vec<Arc<Receiver>> = Vec::new();
    let joined = Instant::now();
    for wave in (0..viewers).collect::<Vec<_>>().chunks(16) {
        let mut joins = Vec::new();
        for _ in wave {
            let http = http.clone();
            let whep = whep.clone();
            joins.push(tokio::spawn(async move {
                let (receiver, _) = Receiver::new([127, 0, 0, 1].into()).await.ok()?;
                let offer = receiver.offer(Duration::from_secs(1)).await.ok()?;
                let response = http
                    .post(&whep)
                    .header("Content-Type", "application/sdp")
                    .body(offer)
                    .send()
                    .await
                    .ok()?;
                if response.status().as_u16() != 201 {
                    return None;
                }
                receiver.accept_answer(&response.text().await.ok()?).await.ok()?;
                receiver
                    .connected(Duration::from_secs(20))
                    .await
                    .then_some(Arc::new(receiver))
            }));
        }
        for join in joins {
            if let Ok(Some(receiver)) = join.await {
                receivers.push(receiver);
            }
        }
    }
    // Every viewer starts on a keyframe: the window opens once each has its first frame (up to a
    // GOP after it joined), so waiting for a keyframe is not counted as missing frames.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) && receivers.iter().any(|r| r.frame_count() == 0) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let join_seconds = joined.elapsed().as_secs_f64();
    let before: Value = http
        .get(format!("{server}/api/v1/webrtc/streams/{stream_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let window_start = Instant::now();
    // The steady window starts now: the script samples the server's CPU over the same interval.
    println!("{{\"steady\": true}}");
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let window = window_start..Instant::now();
    let after: Value = http
        .get(format!("{server}/api/v1/webrtc/streams/{stream_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // A frame is late when it arrives more than one frame interval after its RTP time says.
    let (mut frames, mut late, mut fewest) = (0usize, 0usize, usize::MAX);
    // Late frames by the second of the window they arrived in: one stall, or spread out.
    let mut late_by_second = vec![0usize; seconds as usize + 1];
    // RTP steps between consecutive frames, in frame intervals: 1 is a frame after the other,
    // more is frames missing in between.
    let mut gaps = std::collections::BTreeMap::<u32, usize>::new();
    let mut step_ticks = 0;
    for receiver in &receivers {
        let video: Vec<_> = receiver
            .frames()
            .into_iter()
            .filter(|f| f.mime_type.starts_with("video") && window.contains(&f.arrived))
            .collect();
        fewest = fewest.min(video.len());
        frames += video.len();
        let Some(first) = video.first() else { continue };
        let step = video
            .windows(2)
            .map(|w| w[1].rtp_timestamp.wrapping_sub(w[0].rtp_timestamp))
            .min()
            .unwrap_or(3000)
            .max(1);
        step_ticks = step;
        for pair in video.windows(2) {
            let frames_apart = (pair[1].rtp_timestamp.wrapping_sub(pair[0].rtp_timestamp) + step / 2) / step;
            *gaps.entry(frames_apart).or_default() += 1;
        }
        let interval = f64::from(step) / 90_000.0;
        for frame in &video {
            let due = f64::from(frame.rtp_timestamp.wrapping_sub(first.rtp_timestamp)) / 90_000.0;
            let arrived = frame.arrived.duration_since(first.arrived).as_secs_f64();
            if arrived - due > interval {
                late += 1;
                let second = frame.arrived.saturating_duration_since(window.start).as_secs() as usize;
                late_by_second[second.min(seconds as usize)] += 1;
            }
        }
    }
    let underflows =
        after["playback"]["underflows"].as_u64().unwrap_or(0) - before["playback"]["underflows"].as_u64().unwrap_or(0);
    println!(
        "{}",
        json!({
            "viewers_asked": viewers,
            "viewers_connected": receivers.len(),
            "join_seconds": join_seconds,
            "window_seconds": seconds,
            "frames_received": frames,
            "fewest_frames_per_viewer": if receivers.is_empty() { 0 } else { fewest },
            "late_share": late as f64 / frames.max(1) as f64,
            "late_by_second": late_by_second,
            "underflows": underflows,
            "stream_bitrate_bps": after["playback"]["bitrate_bps"],
            "frames_dropped": after["playback"]["frames_dropped"],
            "rtp_step_ticks": step_ticks,
            "rtp_steps_in_frames": gaps.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        })
    );
    for receiver in receivers {
        receiver.close().await;
    }
    let _ = http
        .delete(format!("{server}/api/v1/webrtc/streams/{stream_id}"))
        .send()
        .await;
}
