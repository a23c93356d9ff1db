#!/usr/bin/env bash
# Makes the small media fixtures in tests/fixtures/media with Debian's ffmpeg (test pattern and sine
# tone, 2 s, 96x64 at 15 fps, a keyframe every 15 frames; one 8 s clip at 320x240). The committed files came
# from this script.
set -euo pipefail
cd "$(dirname "$0")/../tests/fixtures/media"
command -v ffmpeg >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; }
video=(-f lavfi -i "testsrc=size=96x64:rate=15" -t 2)
audio=(-f lavfi -i "sine=frequency=440:sample_rate=48000" -t 2)
quiet=(-hide_banner -loglevel error -y -bitexact)
h264=(-c:v libx264 -bf 0 -g 15 -pix_fmt yuv420p -tune zerolatency)
ffmpeg "${quiet[@]}" "${video[@]}" "${audio[@]}" "${h264[@]}" -profile:v baseline -c:a libopus -b:a 32k \
  -movflags +faststart h264-baseline-opus.mp4
ffmpeg "${quiet[@]}" "${video[@]}" "${h264[@]}" -profile:v main -movflags +faststart h264-main.mp4
ffmpeg "${quiet[@]}" "${video[@]}" -c:v libx264 -profile:v high -pix_fmt yuv420p h264-high-bframes.mp4
ffmpeg "${quiet[@]}" "${video[@]}" "${audio[@]}" "${h264[@]}" -profile:v baseline -c:a aac h264-aac.mp4
ffmpeg "${quiet[@]}" "${video[@]}" "${audio[@]}" -c:v libvpx -g 15 -b:v 100k -c:a libopus -b:a 32k vp8-opus.webm
ffmpeg "${quiet[@]}" "${video[@]}" -c:v libvpx-vp9 -g 15 -b:v 100k vp9.webm
ffmpeg "${quiet[@]}" "${video[@]}" -c:v libvpx -g 15 -b:v 100k vp8.ivf
ffmpeg "${quiet[@]}" "${video[@]}" -c:v libvpx-vp9 -g 15 -b:v 100k vp9.ivf
ffmpeg "${quiet[@]}" "${video[@]}" -c:v libaom-av1 -cpu-used 8 -g 15 -b:v 100k av1.ivf
ffmpeg "${quiet[@]}" "${video[@]}" "${h264[@]}" -profile:v baseline -f h264 h264-baseline.h264
ffmpeg "${quiet[@]}" "${audio[@]}" -c:a libopus -b:a 32k -page_duration 20000 opus.ogg
# Video that starts 0.5 s after the audio: an empty edit leads the video track's edit list.
parts=$(mktemp -d)
ffmpeg "${quiet[@]}" "${video[@]}" "${h264[@]}" -profile:v baseline "$parts/video.mp4"
ffmpeg "${quiet[@]}" "${audio[@]}" -c:a libopus -b:a 32k "$parts/audio.ogg"
ffmpeg "${quiet[@]}" -itsoffset 0.5 -i "$parts/video.mp4" -i "$parts/audio.ogg" -map 0:v -map 1:a -c copy \
  -movflags +faststart h264-opus-video-later.mp4
rm -rf "$parts"
# Raw H.264 with B-frames (refused: WebRTC sends frames in decoding order, players expect no reordering).
ffmpeg "${quiet[@]}" "${video[@]}" -c:v libx264 -profile:v main -bf 2 -g 15 -pix_fmt yuv420p -f h264 h264-main-bframes.h264
# A longer, larger clip for playback through a lossy link: 8 s of 320x240 at 30 fps, ~400 kbit/s VP8.
ffmpeg "${quiet[@]}" -f lavfi -i "testsrc=size=320x240:rate=30" -t 8 -c:v libvpx -g 60 -b:v 400k -minrate 400k \
  -maxrate 400k -deadline realtime -cpu-used 8 vp8-8s.webm
ls -l
