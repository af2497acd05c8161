#!/bin/sh
# Build the small fastText text classifier used by the tests and the demo:
# a labelled corpus the script makes itself (sports / weather / finance),
# trained with Debian's `fasttext` CLI, plus the answers the CLI gives for a
# fixed set of requests, so kinfer's fasttext plugin can be checked against
# fastText itself.
#
# usage: gen_fasttext.sh OUTDIR
# writes OUTDIR/models/nlp/{config.json,model.bin}   (a model repository)
#        OUTDIR/expected/nlp.json  [{"request": OIP request, "outputs": [..]}]
# needs: fasttext (apt-get install fasttext), awk
#
# The corpus comes from a fixed-seed generator and training runs on one
# thread with a fixed seed, so two runs give the same model.  The expected
# outputs come from `fasttext predict-prob` on that model: labels without
# "__label__", probabilities as the CLI prints them (6 significant digits),
# padded to k with "" and 0 when fewer than k labels pass the threshold
# (what the plugin does).
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
out=$1
if ! command -v fasttext >/dev/null 2>&1; then
    echo "$0: the fasttext CLI is missing (apt-get install fasttext)" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/gen_fasttext.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

mkdir -p "$out/models" "$out/expected"
rm -rf "$out/models/nlp"
mkdir "$out/models/nlp"

# --- the training corpus ---------------------------------------------------
# Each sentence mixes words of its topic with filler and, one word in ten,
# a word of another topic, so the classifier is good but not certain.
awk '
function rnd(n) {
    # Park-Miller: exact in the doubles every awk uses.
    seed = (seed * 16807) % 2147483647
    return seed % n
}
function pick(list,    w, n) {
    n = split(list, w, " ")
    return w[rnd(n) + 1]
}
BEGIN {
    seed = 20261127
    topic["sports"] = "match goal striker goalkeeper coach referee penalty " \
        "stadium fans season league cup final tournament team players " \
        "scored won lost draw derby champions transfer midfielder " \
        "defender tackle halftime kickoff trophy semifinal"
    topic["weather"] = "rain snow sunny cloudy wind storm fog thunder " \
        "heatwave frost drizzle forecast temperature humidity showers " \
        "degrees cold warm breeze gusts hail umbrella flood drought " \
        "sunshine overcast chilly humid tornado"
    topic["finance"] = "stocks shares market bank investors interest rates " \
        "inflation bonds dividend profit earnings currency dollar euro " \
        "prices trading fund budget loan mortgage revenue quarter " \
        "analysts recession growth deficit tax"
    filler = "the a this today yesterday tomorrow week after before in on " \
        "with and more than expected again new late early big small " \
        "city people many few"
    split("sports weather finance", names, " ")
    for (i = 0; i < 450; i++) {
        label = names[i % 3 + 1]
        other = names[(i + 1 + rnd(2)) % 3 + 1]
        len = 5 + rnd(6)
        line = "__label__" label
        for (j = 0; j < len; j++) {
            r = rnd(10)
            if (r < 6)
                w = pick(topic[label])
            else if (r < 9)
                w = pick(filler)
            else
                w = pick(topic[other])
            line = line " " w
        }
        print line
    }
}' > "$work/train.txt"

fasttext supervised -input "$work/train.txt" -output "$work/model" \
    -dim 16 -minCount 1 -epoch 25 -lr 0.5 -wordNgrams 1 \
    -thread 1 -seed 1 -verbose 0
cp "$work/model.bin" "$out/models/nlp/model.bin"

cat > "$out/models/nlp/config.json" <<'EOF'
{
    "backend": "fasttext",
    "version": "1",
    "model": "model.bin",
    "k": 1,
    "threshold": 0.0,
    "max_batch_size": 16,
    "max_queue_delay_us": 1000
}
EOF

# --- the expected answers ---------------------------------------------------
# One request per block: "id|k|threshold|shape|parameters" then its
# sentences, one a line; an empty line is an empty sentence.  k and
# threshold are what the plugin will use (config default k=1,
# threshold=0); parameters is the request's "parameters" JSON ("" = none).
cat > "$work/requests.txt" <<'EOF'
@ft-1|1|0|[4]|
the striker scored a late goal in the cup final
heavy rain and strong wind expected tomorrow
investors sold shares as interest rates climbed
the fans left the stadium before the storm
@ft-2|3|0|[3]|{"k": 3}
bank profits fell after the derby
zxqv blorp unknown words only

@ft-3|3|0.2|[3]|{"k": 3, "threshold": 0.2}
the "big" match was cancelled because of hail and fog
la pluie et le vent: météo ☔ forecast
the market and the league both closed early
@ft-4|2|0|[2,1]|{"k": 2}
snow and frost this week
dividend and earnings beat analysts
EOF

# Split the blocks into one sentence file per request, then ask the CLI.
awk -v dir="$work" '
/^@/ {
    n++
    f = dir "/req" n ".txt"
    print substr($0, 2) > (dir "/req" n ".hdr")
    next
}
{ print > f }
' "$work/requests.txt"

i=1
while [ -f "$work/req$i.hdr" ]; do
    IFS='|' read -r id k thr shape params < "$work/req$i.hdr"
    fasttext predict-prob "$work/model.bin" "$work/req$i.txt" "$k" "$thr" \
        > "$work/req$i.out"
    i=$((i + 1))
done

# Assemble expected/nlp.json from the headers, sentences and CLI answers.
awk -v dir="$work" '
function esc(s) {
    gsub(/\\/, "\\\\", s)
    gsub(/"/, "\\\"", s)
    return s
}
BEGIN {
    printf "["
    for (i = 1; ; i++) {
        hdr = dir "/req" i ".hdr"
        if ((getline h < hdr) <= 0)
            break
        close(hdr)
        split(h, f, "|")
        id = f[1]; k = f[2] + 0; shape = f[4]; params = f[5]

        n = 0
        txt = dir "/req" i ".txt"
        while ((getline line < txt) > 0)
            sent[++n] = line
        close(txt)

        labels = ""; probs = ""; row = 0
        outf = dir "/req" i ".out"
        while ((getline line < outf) > 0) {
            row++
            m = split(line, tok, " ")
            for (j = 0; j < k; j++) {
                lab = ""; p = "0"
                if (2 * j + 2 <= m) {
                    lab = tok[2 * j + 1]
                    sub(/^__label__/, "", lab)
                    p = tok[2 * j + 2]
                }
                labels = labels (labels == "" ? "" : ", ") "\"" esc(lab) "\""
                probs = probs (probs == "" ? "" : ", ") p
            }
        }
        close(outf)
        if (row != n) {
            printf "gen_fasttext: %d sentences but %d answers\n", n, row \
                > "/dev/stderr"
            exit 1
        }

        data = ""
        for (j = 1; j <= n; j++)
            data = data (j > 1 ? ", " : "") "\"" esc(sent[j]) "\""
        printf "%s\n  {\"request\": {\"id\": \"%s\", ", (i > 1 ? "," : ""), id
        printf "\"model_name\": \"nlp\", "
        if (params != "")
            printf "\"parameters\": %s, ", params
        printf "\"inputs\": [{\"name\": \"text\", \"datatype\": \"BYTES\", "
        printf "\"shape\": %s, \"data\": [%s]}]},\n", shape, data
        printf "   \"outputs\": [\n"
        printf "    {\"name\": \"labels\", \"datatype\": \"BYTES\", "
        printf "\"shape\": [%d, %d], \"data\": [%s]},\n", n, k, labels
        printf "    {\"name\": \"probabilities\", \"datatype\": \"FP32\", "
        printf "\"shape\": [%d, %d], \"data\": [%s]}]}", n, k, probs
    }
    printf "\n]\n"
}' > "$out/expected/nlp.json"

echo "gen_fasttext: wrote $out/models/nlp and $out/expected/nlp.json"
