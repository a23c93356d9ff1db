#!/usr/bin/env python3
"""Prints the results of scripts/bench-playback.sh (its JSON lines) as Markdown tables: each case,
then each claim beside its goal and our figure.
Usage: playback-table.py <results.jsonl>"""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
by_part = {}
for row in rows:
    by_part.setdefault(row.get("part"), []).append(row)


def pct(value):
    return f"{100 * value:.1f}%"


def table(header, lines):
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for line in lines:
        print("| " + " | ".join(str(cell) for cell in line) + " |")
    print()


claims = []

if "loss" in by_part:
    print("Loss at a 50 ms round trip, in Chromium (frames decoded of those sent, freezes as getStats counts them):\n")
    table(
        ["condition", "repair", "decoded", "freezes", "freeze time", "of play time", "NACKs", "repaired over RTX", "first frame"],
        [
            [r["condition"], r["repair_offered"], f'{r["frames_decoded"]}/{r["frames_sent"]} ({pct(r["decoded_share"])})',
             r["freezes"], f'{r["freeze_s"]} s', pct(r["freeze_share"]), r["nacks"], r["repaired_rtx"],
             f'{r["time_to_first_frame_ms"]} ms']
            for r in by_part["loss"]
        ],
    )
    rtx = {r["condition"]: r for r in by_part["loss"] if r["repair_offered"] == "rtx"}
    if "random 5%" in rtx and "random 15%" in rtx:
        five, fifteen = rtx["random 5%"], rtx["random 15%"]
        claims.append(["Smooth playback at up to 15% loss", "\"plays at 15%\"",
                       ">= 99% / >= 95% decoded at 5% / 15%; 0 freezes at 5%; freeze time < 2% at 15%",
                       f'{pct(five["decoded_share"])} / {pct(fifteen["decoded_share"])} decoded; {five["freezes"]} freezes at 5%; '
                       f'freeze time {pct(fifteen["freeze_share"])} at 15%',
                       "Chromium over WHEP through the impaired link, RTX"])
    if "bursty 5% (bursts of 5)" in rtx:
        bursty = rtx["bursty 5% (bursts of 5)"]
        claims.append(["(bursty loss)", "-", "freeze time < 5% (5% loss in bursts of 5)",
                       f'{pct(bursty["freeze_share"])} ({bursty["freezes"]} freezes, {pct(bursty["decoded_share"])} decoded)',
                       "Gilbert-Elliott loss on the link"])

if "stalls" in by_part:
    print("Store reads delayed by 0-200 ms of jitter and a 2 s stall once a minute (66 s playbacks):\n")
    table(
        ["buffer", "underflows", "Chromium freezes", "freeze time", "decoded", "first frame", "target at the end"],
        [
            [r["buffer"] if r["buffer"] == "adaptive" else f'{r["buffer"]} (fixed)', r["underflows"], r["freezes"],
             f'{r["freeze_s"]} s', f'{r["frames_decoded"]}/{r["frames_sent"]}', f'{r["time_to_first_frame_ms"]} ms',
             r["buffer_target_at_end"]]
            for r in by_part["stalls"]
        ],
    )
    stalls = {str(r["buffer"]): r for r in by_part["stalls"]}
    if "1" in stalls and "adaptive" in stalls:
        one, adaptive = stalls["1"], stalls["adaptive"]
        interruptions = lambda r: r["underflows"]
        fewer = 1 - interruptions(adaptive) / interruptions(one) if interruptions(one) else 0.0
        claims.append(["80-90% fewer playback interruptions with proper buffer sizing", "80-90% fewer",
                       ">= 95% fewer (adaptive vs 1 frame); 0 underflows with 30",
                       f'{pct(fewer)} fewer underflows ({interruptions(one)} -> {interruptions(adaptive)}); '
                       f'{stalls.get("30", {}).get("underflows", "-")} with 30 fixed; Chromium freezes '
                       f'{one["freezes"]} -> {adaptive["freezes"]}',
                       "store fault injection, 66 s playbacks"])

if "cap" in by_part:
    for r in by_part["cap"]:
        print("`auto` over 300 / 800 / 1500 kbit/s renditions, the link capped at 600 kbit/s, then not:\n")
        table(
            ["phase", "rendition at the end", "settled after", "freezes over 1 s", "longest still"],
            [["capped", r["under_cap"]["rendition"], f'{r["under_cap"]["settled_after_ms"]} ms',
              r["freezes_over_1s_under_cap"], f'{r["longest_still_under_cap_ms"]} ms'],
             ["cap lifted", r["after_lift"]["rendition"], f'{r["after_lift"]["settled_after_ms"]} ms', "-", "-"]],
        )
        print("Rendition changes: " + ", ".join(f'{s["at"]} ms {s["rendition"]} ({s["estimate"]} bit/s)' for s in r["timeline"]) + "\n")
        claims.append(["(bandwidth below the top rendition)", "-",
                       "settle on the rendition that fits without freezes over 1 s; back up when the cap goes",
                       f'{r["under_cap"]["rendition"]} after {r["under_cap"]["settled_after_ms"]} ms, '
                       f'{r["freezes_over_1s_under_cap"]} freezes over 1 s; {r["after_lift"]["rendition"]} '
                       f'{r["after_lift"]["settled_after_ms"]} ms after the cap went',
                       "600 kbit/s cap with a 300 ms queue on the link"])

if "ondemand" in by_part:
    print("A viewer who leaves after 10 s of a 10-minute file:\n")
    where = {"store": "read from the store", "upstream": "fetched from upstream (edge)"}
    table(
        ["loading", "bytes sent", "bytes", "read / sent", "file"],
        [["progressive" if r["progressive"] else "whole file", r["bytes_sent"], f'{r["bytes_read"]} {where[r["read_from"]]}',
          f'{r["bytes_read"] / max(r["bytes_sent"], 1):.2f}x', r["file_bytes"]] for r in by_part["ondemand"]],
    )
    loads = {(r["read_from"], r["progressive"]): r for r in by_part["ondemand"]}
    figures = []
    for source, label in [("store", "store"), ("upstream", "upstream")]:
        if (source, True) in loads and (source, False) in loads:
            progressive, whole = loads[(source, True)], loads[(source, False)]
            figures.append(f'{label}: {progressive["bytes_read"] / max(progressive["bytes_sent"], 1):.2f}x the bytes sent, '
                           f'{pct(1 - progressive["bytes_read"] / max(whole["bytes_read"], 1))} less than whole-file')
    if figures:
        claims.append(["20-30% less bandwidth from on-demand loading", "20-30% less than whole-file",
                       "<= 1.2x the bytes sent", "; ".join(figures),
                       "store read and upstream byte counters around one 10 s viewer"])

if "ttff" in by_part:
    cases = [r for r in by_part["ttff"] if "time_to_first_frame_ms_median" in r]
    print("Time to first frame of a 1 GiB file (medians of 9):\n")
    table(["loading", "started by", "first frame"],
          [["progressive" if r["progressive"] else "whole file", r["started_by"], f'{r["time_to_first_frame_ms_median"]} ms']
           for r in cases])
    ttff = {(r["progressive"], r["started_by"]): r["time_to_first_frame_ms_median"] for r in cases}
    if all(key in ttff for key in [(True, "play"), (False, "play"), (True, "link"), (False, "link")]):
        shorter = lambda how: f'{pct(1 - ttff[(True, how)] / ttff[(False, how)])} ({ttff[(False, how)]} -> {ttff[(True, how)]} ms)'
        claims.append(["40-60% shorter time to first frame with progressive loading", "40-60% shorter", ">= 95% shorter (1 GiB)",
                       f'{shorter("play")} shorter with Play pressed; {shorter("link")} with a player link',
                       "the player page in Chromium, medians of 9"])

if claims:
    print("The claims, and ours:\n")
    table(["claim", "claimed", "goal", "ours", "measured by"], claims)
