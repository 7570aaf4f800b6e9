"""The convert job: onnxruntime-genai's model builder from the Hub into /models/genai-<precision>.

Not run in CI (no hub there); notebook 03 does the same conversion in the kernel.
"""
import argparse
import subprocess
import sys

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--model", required=True)
parser.add_argument("--out", default="/models")
parser.add_argument("--precision", default="int4", choices=["fp32", "int4"])
args = parser.parse_args()
sys.exit(subprocess.call([sys.executable, "-m", "onnxruntime_genai.models.builder", "-m", args.model,
                          "-o", f"{args.out}/genai-{args.precision}", "-p", args.precision, "-e", "cpu",
                          "-c", "/tmp/builder"]))
