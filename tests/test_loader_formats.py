"""The loader on every file shape a user brings: encodings, formats told by content, nested documents,
shards, datasets folders, compressed files, stray CSV quotes, and text that is not a table."""

import gzip
import json
from pathlib import Path

import polars as pl
import pytest
import zstandard

from tunelab.errors import UserError
from tunelab.records.config import DatasetConfig
from tunelab.records.loader import load_dataset_records

CHATBOT = "songys__Chatbot_data/ChatbotData.csv"


def load(path, **kw):
    return load_dataset_records(DatasetConfig(path=path, name=kw.pop("name", "t"), **kw))


def sft_lines(n: int) -> list[str]:
    return [
        json.dumps({"prompt": f"질문 {i}", "response": f"답변 {i}"}, ensure_ascii=False) for i in range(n)
    ]


# ---------------------------------------------------------------- encodings


@pytest.mark.parametrize("encoding", ["cp949", "euc-kr", "utf-16", "utf-16-le", "utf-16-be", "utf-8-sig"])
def test_chatbotdata_in_other_encodings_gives_the_same_rows_as_utf8(
    shared_data: Path, tmp_path: Path, encoding
):
    source = shared_data / CHATBOT
    fields = {"prompt": "Q", "response": "A"}
    reference = load(source, fields=fields)
    copy = tmp_path / f"chatbot-{encoding}.csv"
    copy.write_bytes(source.read_text(encoding="utf-8").encode(encoding))
    result = load(copy, fields=fields)
    assert (result.read, result.frame.height, result.quarantine.height) == (11823, 11823, 0)
    assert result.frame.drop("source_id").equals(reference.frame.drop("source_id"))
    # Python's EUC-KR spells ChatbotData's syllables outside KS X 1001 (왤, 젹) as 8-byte jamo sequences
    expected = {"cp949": "cp949", "euc-kr": "euc_kr", "utf-8-sig": "utf-8"}.get(encoding, "utf-16-le")
    if encoding == "utf-16-be":
        expected = "utf-16-be"
    assert result.source["encoding"] == expected
    if expected != "utf-8":
        assert any(expected in note for note in result.source["notes"])


def test_forced_encoding_and_undecodable_lines_with_byte_offsets(tmp_path: Path):
    good = [json.dumps({"prompt": "안녕", "response": f"반가워 {i}"}, ensure_ascii=False) for i in range(3)]
    data = "\n".join(good).encode("cp949") + b"\n" + b'{"prompt": "\xff\xff", "response": "x"}\n'
    path = tmp_path / "forced.jsonl"
    path.write_bytes(data)
    result = load(path, encoding="cp949")
    assert (result.read, result.frame.height, result.quarantine.height) == (4, 3, 1)
    assert result.frame["prompt"].to_list() == ["안녕"] * 3
    bad = result.quarantine.row(0, named=True)
    offset = data.index(b"\xff")
    assert (bad["source_line"], bad["error"]) == (4, f"invalid CP949 at byte {offset}")
    assert "\ufffd" in bad["raw"] and bad["raw"].startswith('{"prompt": ')
    assert result.source["encoding"] == "cp949"
    # the same file read as UTF-8: nothing decodes, every line says where
    wrong = load(path, encoding="utf-8")
    assert (wrong.read, wrong.frame.height, wrong.quarantine.height) == (4, 0, 4)
    assert wrong.quarantine["error"][0] == f"invalid UTF-8 at byte {data.index('안'.encode('cp949'))}"
    with pytest.raises(Exception, match="unknown encoding 'klingon'"):
        DatasetConfig(path=path, name="t", encoding="klingon")


def test_a_utf8_file_with_one_corrupt_line_stays_utf8(tmp_path: Path):
    lines = [line.encode() for line in sft_lines(20)]
    lines[7] = b'{"prompt": "\xb0\xa1", "response": "x"}'  # CP949 bytes pasted into a UTF-8 file
    path = tmp_path / "mostly.jsonl"
    path.write_bytes(b"\n".join(lines))
    result = load(path)
    assert (result.read, result.frame.height, result.quarantine.height) == (20, 19, 1)
    assert result.source["encoding"] == "utf-8"
    assert result.quarantine["error"][0].startswith("invalid UTF-8 at byte ")


# ---------------------------------------------------------------- formats by content


def test_pretty_json_array_in_a_jsonl_file_is_read_as_an_array(tmp_path: Path):
    rows = [{"prompt": f"질문 {i}", "response": f"답 {i}"} for i in range(12_000)]
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    result = load(path)
    assert (result.read, result.frame.height, result.quarantine.height) == (12_000, 12_000, 0)
    assert result.source["format"] == "json"
    assert result.source["notes"] == ["prompts.jsonl: holds one JSON array, not JSON lines: read as json"]


def test_json_lines_in_a_json_file_and_cr_only_line_ends(tmp_path: Path):
    path = tmp_path / "lines.json"
    path.write_text("\n".join(sft_lines(5)) + "\n", encoding="utf-8")
    result = load(path)
    assert (result.read, result.frame.height, result.source["format"]) == (5, 5, "jsonl")
    mac = tmp_path / "mac.jsonl"
    mac.write_bytes("\r".join(sft_lines(10)).encode())
    result = load(mac)
    assert (result.read, result.frame.height) == (10, 10)
    assert result.frame["source_line"].to_list() == list(range(1, 11))
    csv_mac = tmp_path / "mac.csv"
    csv_mac.write_bytes(
        ("prompt,response\r" + "\r".join(f"질문 {i},답 {i}" for i in range(10)) + "\r").encode()
    )
    assert load(csv_mac).frame.height == 10


def test_korquad_style_file_through_a_record_selector(tmp_path: Path):
    doc = {
        "version": "KorQuAD_v1.0",
        "data": [
            {
                "title": f"문서 {a}",
                "paragraphs": [
                    {
                        "context": f"본문 {a}-{b}",
                        "qas": [
                            {"id": f"{a}-{b}-{c}", "question": f"질문 {c}", "answers": [{"text": f"답 {c}"}]}
                            for c in range(3)
                        ],
                    }
                    for b in range(2)
                ],
            }
            for a in range(2)
        ]
        + [{"title": "문단 없음"}],
    }
    path = tmp_path / "korquad.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    fields = {"context": "context", "question": "question", "answer": "answers[0].text"}
    result = load(path, kind="raft", records="data[].paragraphs[].qas[]", fields=fields)
    assert (result.read, result.frame.height, result.quarantine.height) == (13, 12, 1)
    first = result.frame.row(4, named=True)
    assert (first["context"], first["question"], first["answer"]) == (["본문 0-1"], "질문 1", "답 1")
    assert first["source_id"] == "0-1-1"
    q = result.quarantine.row(0, named=True)
    assert q["error"] == "dataset.records: data[2] has no 'paragraphs'"
    assert json.loads(q["raw"]) == {"title": "문단 없음"}
    # the title of the article is reachable too (the parents' scalar fields are merged in)
    titled = load(
        path,
        kind="sft",
        records="data[].paragraphs[].qas[]",
        fields={"prompt": "title", "response": "question"},
    )
    assert titled.frame["prompt"][0] == "문서 0"
    with pytest.raises(Exception, match="expected keys joined by"):
        DatasetConfig(path=path, name="t", records="data[[]")


def test_glob_folder_of_shards_keeps_ids_unique_and_names_the_file(tmp_path: Path):
    shards = tmp_path / "data"
    shards.mkdir()
    for i in range(3):
        pl.DataFrame({"prompt": [f"p{i}-{j}" for j in range(4)], "response": ["r"] * 4}).write_parquet(
            shards / f"part-{i}.parquet"
        )
    (shards / "part-3.jsonl").write_text(sft_lines(2)[0] + "\n{broken\n", encoding="utf-8")
    result = load(shards / "*.parquet")
    assert (result.read, result.frame.height) == (12, 12)
    assert result.frame["sample_id"].n_unique() == 12
    assert result.frame["sample_id"][:5].to_list() == ["t:0-0", "t:0-1", "t:0-2", "t:0-3", "t:1-0"]
    assert len(result.source["files"]) == 3
    folder = load(shards)  # a folder: every data file in it, each by its own format
    assert (folder.read, folder.frame.height, folder.quarantine.height) == (14, 13, 1)
    assert folder.quarantine.row(0, named=True)["source_file"] == str(shards / "part-3.jsonl")
    assert folder.quarantine.row(0, named=True)["source_line"] == 2
    assert folder.source["format"] == "parquet, jsonl"
    single = load(shards / "part-0.parquet")  # one file: ids unchanged
    assert single.frame["sample_id"][0] == "t:0"
    with pytest.raises(UserError, match=r"nope-\*.parquet: no file matches"):
        load(shards / "nope-*.parquet")


def test_datasets_save_to_disk_folder(tmp_path: Path):
    import datasets

    ds = datasets.Dataset.from_dict(
        {"prompt": ["가", "나", "다"], "response": ["a", "b", "c"], "id": [7, 8, 9]}
    )
    ds.save_to_disk(str(tmp_path / "one"))
    result = load(tmp_path / "one")
    assert (result.read, result.frame.height) == (3, 3)
    assert result.frame["source_id"].to_list() == ["7", "8", "9"]
    assert result.source["format"] == "datasets"
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "dict"))
    splits = load(tmp_path / "dict")
    assert splits.frame["sample_id"].to_list() == ["t:0-0", "t:0-1", "t:0-2", "t:1-0"]


def test_zstd_beside_gzip(tmp_path: Path):
    body = ("\n".join(sft_lines(7)) + "\n").encode()
    (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(body))
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(body))
    # a frame without its content size (as the zstd CLI writes through a pipe) decodes too
    streamed = zstandard.ZstdCompressor().compressobj()
    (tmp_path / "c.jsonl.zst").write_bytes(streamed.compress(body) + streamed.flush())
    for name in ("a.jsonl.zst", "b.jsonl.gz", "c.jsonl.zst"):
        assert load(tmp_path / name).frame.height == 7
    (tmp_path / "bad.jsonl.zst").write_bytes(b"not zstd")
    with pytest.raises(UserError, match="bad.jsonl.zst: not a valid zstd file"):
        load(tmp_path / "bad.jsonl.zst")


# ---------------------------------------------------------------- CSV quotes, not-a-table text


def _rows(n: int) -> list[str]:
    return [f"질문 {i},답변 {i}" for i in range(n)]


def test_stray_csv_quote_never_merges_rows(tmp_path: Path):
    rows = _rows(100)
    rows[10] = '"' + rows[10]  # line 12 opens a quote ...
    rows[15] = '끝"' + rows[15]  # ... that closes on line 17
    path = tmp_path / "stray.csv"
    path.write_text("prompt,response\n" + "\n".join(rows) + "\n", encoding="utf-8")
    result = load(path)
    assert (result.read, result.frame.height, result.quarantine.height) == (100, 94, 6)
    assert result.quarantine["source_line"].to_list() == [12, 13, 14, 15, 16, 17]
    assert result.quarantine["raw"].to_list() == ["prompt,response\n".split()[0]] * 0 + rows[10:16]
    assert result.quarantine["error"][0] == (
        "stray quote: a quote on line 12 opens a field that closes on line 17, over lines that look like "
        "rows (lines 12-17)"
    )
    assert all(len(p) < 20 for p in result.frame["prompt"].to_list())  # no kept prompt holds other rows


def test_unterminated_csv_quote_quarantines_every_line_it_swallowed(tmp_path: Path):
    rows = _rows(100)
    rows[10] = '"' + rows[10]
    path = tmp_path / "open.csv"
    path.write_text("prompt,response\n" + "\n".join(rows) + "\n", encoding="utf-8")
    result = load(path)
    assert (result.read, result.frame.height, result.quarantine.height) == (100, 10, 90)
    assert "never closes" in result.quarantine["error"][0]
    assert result.quarantine["raw"].to_list() == rows[10:]  # each line whole


def test_a_real_multiline_cell_is_kept(tmp_path: Path):
    path = tmp_path / "multi.csv"
    path.write_text('prompt,response\n안녕,"첫 줄\n둘째 줄\n셋째 줄"\n다음,행\n', encoding="utf-8")
    result = load(path)
    assert (result.read, result.frame.height) == (2, 2)
    assert result.frame["response"][0] == "첫 줄\n둘째 줄\n셋째 줄"


def test_quarantine_keeps_the_raw_text_whole(tmp_path: Path):
    path = tmp_path / "long.jsonl"
    long_line = '{"prompt": "' + "가" * 10_000 + '", broken'
    path.write_text(long_line + "\n" + sft_lines(1)[0] + "\n", encoding="utf-8")
    result = load(path)
    assert result.quarantine["raw"][0] == long_line


def test_a_transcript_is_not_taken_for_a_table(tmp_path: Path):
    plain = tmp_path / "talk.tsv"
    plain.write_text(
        "User: 안녕하세요\n" + "\n".join(f"Bot: 말 {i}" for i in range(40)) + "\n", encoding="utf-8"
    )
    with pytest.raises(UserError, match=r"talk.tsv:1: the first line 'User: 안녕하세요' has no tab"):
        load(plain)
    tagged = tmp_path / "tagged.tsv"
    turns = "\n".join(f"{'User:' if i % 2 else 'Bot:'}\t말 {i}" for i in range(40))
    tagged.write_text("User:\t안녕하세요\n" + turns + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"tagged.tsv:1: the first line looks like data, not a header"):
        load(tagged)
    # a real one-column table (a header naming its column) is fine
    text = tmp_path / "docs.tsv"
    text.write_text("text\n" + "\n".join(f"문서 {i}" for i in range(5)) + "\n", encoding="utf-8")
    assert load(text, kind="text").frame.height == 5


def test_empty_and_blank_files_are_one_line_errors(tmp_path: Path):
    for name, body in (("empty.jsonl", ""), ("blank.jsonl", "\n  \n\r\n"), ("empty.csv", "")):
        path = tmp_path / name
        path.write_text(body, encoding="utf-8")
        with pytest.raises(
            UserError, match=f"{name}: no records: the file is empty or holds only blank lines"
        ):
            load(path)
