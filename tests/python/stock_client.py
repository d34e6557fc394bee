"""Result codes and faults as Python's stock xmlrpc.client sees them.

usage: stock_client.py ENGINE_URL
"""
import sys
import xmlrpc.client

url = sys.argv[1]
engine = xmlrpc.client.ServerProxy(url)
root = xmlrpc.client.ServerProxy(url + "/")  # posts to /

assert engine.GetJob("nope") == {"ResultCode": 1, "ErrorMessage": "no job with JobID 'nope'"}
assert root.GetProgress("nope")["ResultCode"] == 1
r = engine.CreateJob("bad id!", "EncoderJob", "", "")
assert r["ResultCode"] == 6 and "JobID" in r["ErrorMessage"], r
r = engine.CreateJob("py-1", "Nope", "", "")
assert r["ResultCode"] == 3 and "'Nope'" in r["ErrorMessage"], r
r = engine.CreateJob("py-1", "EncoderJob", "<EncoderJob><Colour>x</Colour></EncoderJob>", "")
assert r["ResultCode"] == 4 and "Colour" in r["ErrorMessage"], r

methods = engine.system.listMethods()
assert methods == sorted(methods) and "CreateJob" in methods and "system.multicall" in methods, methods
assert "CreateJob" in engine.system.methodHelp("CreateJob")
assert engine.system.methodSignature("GetJob") == [["struct", "string"]]

multi = xmlrpc.client.MultiCall(engine)
multi.GetJob("nope")
multi.NoSuchMethod()
results = multi()
assert results[0]["ResultCode"] == 1
try:
    results[1]
    raise AssertionError("expected a fault")
except xmlrpc.client.Fault as f:
    assert f.faultCode == -32601, f

for call, code in [(lambda: engine.NoSuchMethod(), -32601),
                   (lambda: engine.GetJob(), -32602),
                   (lambda: engine.GetJob(1), -32602),
                   (lambda: engine.CreateJob("a", "b"), -32602)]:
    try:
        call()
        raise AssertionError("expected a fault")
    except xmlrpc.client.Fault as f:
        assert f.faultCode == code, (f.faultCode, f.faultString)
print("ok")
