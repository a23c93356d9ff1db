//! Follows each connection: announces it established, switches its rendition in `auto` from the
//! congestion controller's estimate and the loss its receiver reports, and ends it, with a typed
//! [`CloseReason`], when it fails, closes or never connects.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use webrtc::peer_connection::RTCPeerConnectionState;

use super::WebRtcHub;
use super::connections::Connection;
use crate::notifications::{CloseReason, Event, WebrtcErrorSubject};
use crate::webrtc::quality::{AdaptiveSwitch, Quality};

impl WebRtcHub {
    /// Follows a connection: announces it established, adapts its quality in `auto`, and closes
    /// it when it fails, closes, or never connects.
    pub(super) async fn supervise(self: Arc<Self>, connection: Arc<Connection>) {
        let mut state = connection.peer.state();
        let mut established = false;
        let mut abr = AdaptiveSwitch::new(*connection.selected.borrow());
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        // Loss from RTCP receiver reports, read every few ticks (a stats report is not cheap).
        let (mut rtcp_loss, mut ticks) = (0.0, 0u64);
        let reason = loop {
            tokio::select! {
                changed = state.changed() => {
                    if changed.is_err() {
                        break CloseReason::Closed;
                    }
                }
                _ = tick.tick() => {}
            }
            if !self
                .connections
                .lock()
                .expect("not poisoned")
                .contains_key(&connection.pc_id)
            {
                return;
            }
            let current = *state.borrow_and_update();
            match current {
                RTCPeerConnectionState::Connected if !established => {
                    established = true;
                    self.notify(Event::WebrtcConnectionEstablished {
                        pc_id: connection.pc_id.clone(),
                        stream_id: connection.stream.id.clone(),
                        setup_ms: connection.created.elapsed().as_millis() as u64,
                    });
                }
                RTCPeerConnectionState::Failed => break CloseReason::Failed,
                RTCPeerConnectionState::Closed => break CloseReason::Closed,
                _ => {}
            }
            if !established && connection.created.elapsed() > self.config.connect_timeout {
                break CloseReason::NeverConnected;
            }
            let quality = *connection.quality.lock().expect("not poisoned");
            if established && quality == Quality::Auto && connection.stream.adaptable() {
                let bitrates = connection.stream.bitrates.lock().expect("not poisoned").clone();
                let estimate = connection.peer.bandwidth_estimate();
                if ticks % 4 == 0 {
                    rtcp_loss = connection.peer.stats().await.rtcp_fraction_lost.unwrap_or(0.0);
                }
                ticks += 1;
                // TWCC feedback and receiver reports each see loss; the worse one counts.
                let loss = connection.peer.packet_loss().max(rtcp_loss);
                // The viewer may have chosen a fixed preset since the last decision.
                abr.follow(Instant::now(), *connection.selected.borrow());
                let probed = connection.peer.probed_bandwidth();
                if let Some(rate) = abr.probe_for(estimate, probed, loss, &bitrates) {
                    connection.peer.probe(rate);
                }
                if let Some(to) = abr.decide_probed(Instant::now(), estimate, probed, loss, &bitrates) {
                    self.switch(&connection, to, "auto", estimate, loss);
                }
            }
        };
        if reason.is_failure() {
            self.notify(Event::WebrtcError {
                subject: WebrtcErrorSubject::Connection {
                    pc_id: connection.pc_id.clone(),
                    stream_id: connection.stream.id.clone(),
                },
                error: format!("connection {}", reason.as_str()),
            });
        }
        let _ = self.finish(&connection.pc_id, reason).await;
    }

    pub(super) fn switch(
        &self,
        connection: &Connection,
        to: usize,
        reason: &'static str,
        estimate_bps: f64,
        loss: f64,
    ) {
        let from = *connection.selected.borrow();
        if from == to {
            return;
        }
        connection.selected.send_replace(to);
        self.counters.quality_switches.fetch_add(1, Ordering::Relaxed);
        let renditions = &connection.stream.renditions;
        self.notify(Event::WebrtcQualityChanged {
            pc_id: connection.pc_id.clone(),
            stream_id: connection.stream.id.clone(),
            from: renditions[from].quality.as_str(),
            to: renditions[to].quality.as_str(),
            reason,
            bandwidth_estimate_bps: estimate_bps,
            packet_loss: loss,
        });
    }
}
