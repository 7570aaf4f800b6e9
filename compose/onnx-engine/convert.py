"""The convert job: onnxruntime-genai's model builder into /models/genai-<precision>.

``--model`` is a Hugging Face Hub id, or a folder on the host mounted at /source (the lab's CI
converts the model it serves that way: no Hub there). A local folder's tokenizer, chat template,
license and provenance travel with the build (the engine reads the template from the folder).
"""
import argparse
import shutil
import subprocess
import sys
from pathlib import Path

FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
         "generation_config.json", "LICENSE", "PROVENANCE.md")

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--model", required=True, help="a Hub id, or a mounted folder such as /source")
parser.add_argument("--out", default="/models")
parser.add_argument("--precision", default="int4", choices=["fp32", "int4"])
args = parser.parse_args()
source, out = Path(args.model), Path(args.out) / f"genai-{args.precision}"
model = ["-i", str(source)] if source.is_dir() else ["-m", args.model]
code = subprocess.call([sys.executable, "-m", "onnxruntime_genai.models.builder", *model, "-o", str(out),
                        "-p", args.precision, "-e", "cpu", "-c", "/tmp/builder"])
if code == 0 and source.is_dir():
    for name in FILES:
        if (source / name).exists():
            shutil.copy(source / name, out / name)
print(f"convert job: {args.model} -> {out} ({'ok' if code == 0 else f'failed, exit {code}'})", flush=True)
sys.exit(code)
