"""Prints a digest of the resource blobs of a textual MLIR module (the
weights, codes and scales), independent of how the IR around them is
printed: one SHA-256 over every resource's name and bytes, in name order."""

import hashlib
import re
import sys

text = open(sys.argv[1]).read()
start = text.rfind("{-#")
if start < 0:
    sys.exit("no resource section in " + sys.argv[1])
blobs = dict(re.findall(r'^\s*([\w.$-]+|"[^"]*"):\s*"0x([0-9A-Fa-f]+)"', text[start:], re.M))
digest = hashlib.sha256()
for name in sorted(blobs):
    digest.update(name.encode() + b"\0" + bytes.fromhex(blobs[name]))
print(f"resources: {len(blobs)} sha256: {digest.hexdigest()[:32]}")
