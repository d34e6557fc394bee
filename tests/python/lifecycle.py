"""The website's view, with Python's stock xmlrpc.client: upload an MP3 and a
cover, create and start an EncoderJob, watch its progress rise, download the
video and check it with ffprobe. Prints one JSON line of what it saw.

usage: lifecycle.py ENGINE_URL MP3 PNG OUTDIR
"""
import json
import subprocess
import sys
import time
import urllib.request
import xmlrpc.client

url, mp3, png, outdir = sys.argv[1:5]


def upload(path, name):
    with open(path, "rb") as f:
        req = urllib.request.Request(f"{url}/files?name={name}", data=f.read(), method="POST")
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 201, resp.status
        file_id = resp.read().decode().strip()
        assert resp.headers["Location"] == f"/files/{file_id}", resp.headers["Location"]
        return file_id


def duration(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", path],
        check=True, capture_output=True, text=True).stdout
    return float(out)


def streams(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0", path],
        check=True, capture_output=True, text=True).stdout
    return sorted(line.strip() for line in out.splitlines() if line.strip())


engine = xmlrpc.client.ServerProxy(url)  # posts to /RPC2
audio = upload(mp3, "song.mp3")
image = upload(png, "cover.png")
details = f"<EncoderJob><AudioFile>{audio}</AudioFile><ImageFile>{image}</ImageFile></EncoderJob>"
created = engine.CreateJob("", "EncoderJob", details, "")
assert created["ResultCode"] == 0, created
job_id = created["JobID"]
assert len(job_id) == 36, job_id  # a generated UUID

job = engine.GetJob(job_id)["Job"]
assert job["State"] == "Created" and job["ProgressAmount"] == 0, job
started = engine.StartJob(job_id)
assert started == {"ResultCode": 0, "ErrorMessage": ""}, started

seen = []
deadline = time.time() + 300
while True:
    progress = engine.GetProgress(job_id)
    assert progress["ResultCode"] == 0, progress
    seen.append(progress["Progress"])
    state = engine.GetJob(job_id)["Job"]["State"]
    if state in ("Success", "Failed"):
        break
    assert time.time() < deadline, f"not done in time, progress {seen[-5:]}"
    time.sleep(0.05)

job = engine.GetJob(job_id)["Job"]
assert job["State"] == "Success", job
assert job["ResultCode"] == 0 and job["ErrorMessage"] == "" and job["ProgressAmount"] == 100, job
assert isinstance(job["LastStateChange"], xmlrpc.client.DateTime), job
assert len(job["Outputs"]) == 1, job

rising = [p for p in seen if 0 < p < 100]
assert rising, f"no progress between 0 and 100 was seen: {seen}"
assert all(a <= b for a, b in zip(seen, seen[1:])), f"progress went down: {seen}"

video = f"{outdir}/video.mp4"
with urllib.request.urlopen(f"{url}/files/{job['Outputs'][0]}") as resp, open(video, "wb") as out:
    out.write(resp.read())
assert streams(video) == ["audio", "video"], streams(video)
track, produced = duration(mp3), duration(video)
assert abs(produced - track) < 1.0, (track, produced)

print(json.dumps({"job": job_id, "progress_seen": sorted(set(seen)), "track": track, "video": produced}))
