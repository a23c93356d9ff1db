//! The stack's UDP sockets, tapped: once a connection has a direct path, a reader of the path's
//! own takes the socket over from the stack's driver, keeps RTCP for the path and hands STUN and
//! DTLS back to the stack ([`TapRuntime`] makes every socket of the stack such a socket).

use super::*;

/// Whether a datagram is RTCP (RFC 5761: RTP and RTCP on one port are told apart by the
/// second byte; DTLS and STUN do not start with version 2).
pub(super) fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 8 && datagram[0] >> 6 == 2 && (192..=223).contains(&datagram[1])
}

/// Whether a datagram is RTP media (version 2, not RTCP).
pub(super) fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12 && datagram[0] >> 6 == 2 && !is_rtcp(datagram)
}

/// Drops one in `every` RTP datagram received: loss on demand, for the receivers of tests and
/// simulations.
#[derive(Debug)]
pub(super) struct InboundLoss {
    pub(super) every: u32,
    pub(super) seen: std::sync::atomic::AtomicU32,
}

impl InboundLoss {
    pub(super) fn drops(&self, datagram: &[u8]) -> bool {
        is_rtp(datagram) && (self.seen.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(self.every)
    }
}

/// A UDP socket of the stack's whose RTCP goes to the direct path once there is one (and which may
/// lose media on purpose).
#[derive(Debug)]
pub(crate) struct TappedSocket {
    pub(super) inner: Arc<dyn AsyncUdpSocket>,
    pub(super) loss: Option<Arc<InboundLoss>>,
    /// Who reads the socket once a direct path has claimed it (see [`read_for_path`]).
    pub(super) reader: ReaderHandoff,
}

/// The hand-over of a socket between the stack's driver and the direct path's reader. Every RTCP
/// datagram (a dozen a second per viewer) used to wake the connection's whole driver; the reader
/// handles it alone and passes on only what the stack answers for (STUN, DTLS).
#[derive(Debug, Default)]
pub(super) struct ReaderHandoff {
    /// A direct path claimed the socket.
    pub(super) requested: AtomicBool,
    /// The reader has the socket: the driver takes what it needs from `for_stack` only. Set by the
    /// driver itself, so that once it is set the driver never polls the socket again and its
    /// waker cannot take the socket's readiness from the reader.
    pub(super) reading: AtomicBool,
    pub(super) for_stack: Mutex<VecDeque<(Vec<u8>, RecvMeta)>>,
    pub(super) driver: AtomicWaker,
    pub(super) path_reader: AtomicWaker,
}

/// Datagrams for the stack kept while its driver is busy; STUN and DTLS retransmit what is lost.
pub(super) const FOR_STACK_QUEUE: usize = 64;

impl TappedSocket {
    /// What the direct path's reader received for the stack, one datagram at a time.
    fn take_for_stack(&self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(slot)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        let Some((datagram, received)) = self.reader.for_stack.lock().expect("not poisoned").pop_front() else {
            return Poll::Pending;
        };
        let length = datagram.len().min(buf.len());
        buf[..length].copy_from_slice(&datagram[..length]);
        *slot = received;
        slot.len = length;
        slot.stride = length;
        Poll::Ready(Ok(1))
    }

    /// Claims the socket for a direct path's reader, which has it from the driver's next poll
    /// on; `None` if another path has it. The claim ends when the returned guard is dropped.
    pub(super) fn claim_for_path(self: &Arc<Self>) -> Option<HandBack> {
        if self.reader.requested.swap(true, Ordering::AcqRel) {
            return None;
        }
        self.reader.driver.wake();
        Some(HandBack(self.clone()))
    }

    /// One received message (several datagrams when GRO coalesced them): RTCP to `path`, the
    /// rest queued for the stack, whose driver is woken for it.
    fn deliver(&self, path: &Arc<DirectPath>, message: &[u8], received: RecvMeta) {
        let mut for_stack = false;
        for datagram in message.chunks(received.stride.max(1)) {
            if is_rtcp(datagram) {
                path.on_rtcp(datagram);
            } else if !self.loss.as_ref().is_some_and(|loss| loss.drops(datagram)) {
                let mut queue = self.reader.for_stack.lock().expect("not poisoned");
                if queue.len() < FOR_STACK_QUEUE {
                    queue.push_back((datagram.to_vec(), received));
                    for_stack = true;
                }
            }
        }
        if for_stack {
            self.reader.driver.wake();
        }
    }

    /// Receives one datagram at a time, dropping those the loss takes.
    fn poll_recv_lossy(
        &self,
        loss: &InboundLoss,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            let received = self.inner.poll_recv(cx, &mut bufs[..1], &mut meta[..1]);
            if let Poll::Ready(Ok(1)) = received {
                let single = meta[0].len <= meta[0].stride;
                if single && loss.drops(&bufs[0][..meta[0].len]) {
                    continue;
                }
            }
            return received;
        }
    }
}

thread_local! {
    /// The receive buffer of the readers running on a thread (a reader never holds it across an
    /// await): large enough for a GRO batch, and one per thread rather than per connection.
    static RECEIVED: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 65_536]);
}

/// Datagrams a reader takes before letting other tasks run.
pub(super) const READER_BUDGET: usize = 64;

/// A claim on a socket for a direct path's reader: dropping it gives the socket back to the driver.
pub(super) struct HandBack(Arc<TappedSocket>);

impl Drop for HandBack {
    fn drop(&mut self) {
        let handoff = &self.0.reader;
        handoff.requested.store(false, Ordering::Release);
        handoff.reading.store(false, Ordering::Release);
        handoff.driver.wake();
    }
}

/// Reads the claimed socket for its direct path once the driver has handed it over: RTCP goes to
/// the path there and then, anything else (STUN, DTLS) to the stack's driver, which is woken only
/// for that. The socket goes back to the driver when the reader ends (the claim is held by the
/// task, so even one aborted before it ran gives it back): when the path goes (its task is
/// aborted) or the socket fails (the driver then meets the error itself).
pub(super) async fn read_for_path(claim: HandBack, path: Weak<DirectPath>) {
    let socket = &claim.0;
    futures::future::poll_fn(|cx| {
        let handoff = &socket.reader;
        handoff.path_reader.register(cx.waker());
        if !handoff.reading.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        RECEIVED.with_borrow_mut(|buffer| {
            for _ in 0..READER_BUDGET {
                let mut meta = [RecvMeta::default()];
                match socket.inner.poll_recv(cx, &mut [IoSliceMut::new(buffer)], &mut meta) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(error)) if is_retryable(&error) => continue,
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Ready(Ok(0)) => continue,
                    Poll::Ready(Ok(_)) => {
                        let Some(path) = path.upgrade() else {
                            return Poll::Ready(());
                        };
                        let [received] = meta;
                        socket.deliver(&path, &buffer[..received.len], received);
                    }
                }
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        })
    })
    .await;
}

/// Receive errors that leave the socket usable (as the stack's driver counts them).
pub(super) fn is_retryable(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::TimedOut
    )
}

impl AsyncUdpSocket for TappedSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        self.inner.poll_send(cx, transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let handoff = &self.reader;
        // The driver also probes with a waker that wakes nobody: that one is not kept.
        if !cx.waker().will_wake(std::task::Waker::noop()) {
            handoff.driver.register(cx.waker());
        }
        if handoff.requested.load(Ordering::Acquire) && !handoff.reading.swap(true, Ordering::AcqRel) {
            handoff.path_reader.wake();
        }
        if handoff.reading.load(Ordering::Acquire) {
            return self.take_for_stack(bufs, meta);
        }
        match &self.loss {
            Some(loss) if !bufs.is_empty() && !meta.is_empty() => self.poll_recv_lossy(loss, cx, bufs, meta),
            _ => self.inner.poll_recv(cx, bufs, meta),
        }
    }

    fn max_gso_segments(&self) -> usize {
        self.inner.max_gso_segments()
    }

    fn max_gro_segments(&self) -> usize {
        self.inner.max_gro_segments()
    }
}

/// Tokio, as the stack uses it, except that the UDP sockets it wraps are tapped and kept: one
/// per peer connection, so the sockets are that connection's.
#[derive(Debug)]
pub(crate) struct TapRuntime {
    pub(super) tokio: TokioRuntime,
    pub(super) sockets: Mutex<Vec<Arc<TappedSocket>>>,
    pub(super) loss: Option<Arc<InboundLoss>>,
}

impl Default for TapRuntime {
    fn default() -> Self {
        Self {
            tokio: TokioRuntime,
            sockets: Mutex::new(Vec::new()),
            loss: None,
        }
    }
}

impl TapRuntime {
    /// A runtime whose sockets drop one in `every` RTP datagram they receive.
    pub fn losing_one_in(every: u32) -> Self {
        Self {
            loss: Some(Arc::new(InboundLoss {
                every: every.max(2),
                seen: Default::default(),
            })),
            ..Self::default()
        }
    }

    pub(super) fn sockets(&self) -> Vec<Arc<TappedSocket>> {
        self.sockets.lock().expect("not poisoned").clone()
    }
}

impl Runtime for TapRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.tokio.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.tokio.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let tapped = Arc::new(TappedSocket {
            inner: self.tokio.wrap_udp_socket(socket)?,
            loss: self.loss.clone(),
            reader: ReaderHandoff::default(),
        });
        let mut sockets = self.sockets.lock().expect("not poisoned");
        // An ICE restart rebinds: the sockets of before are the stack's no more.
        sockets.retain(|socket| Arc::strong_count(socket) > 1);
        sockets.push(tapped.clone());
        Ok(tapped)
    }

    fn wrap_tcp_listener(&self, listener: std::net::TcpListener) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.tokio.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.tokio.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.tokio.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.tokio.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.tokio.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.tokio.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.tokio.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.tokio.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio (tapped)"
    }
}
