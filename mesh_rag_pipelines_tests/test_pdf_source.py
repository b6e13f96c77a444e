"""A folder of PDF documents (`kind: pdf_files`): pages and outline sections reach the chunks'
sections, an unreadable PDF is quarantined alone, and a changed or removed PDF is followed,
through `mesh-rag` as typed."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from mesh_rag_pipelines.contracts import load_contract
from mesh_rag_pipelines.contracts.loader import PRODUCTS_DIR, contract_text, find_contract
from mesh_rag_pipelines.sources.documents import RecordError
from mesh_rag_pipelines.sources.pdf import pdf_record
from mesh_rag_pipelines_tests.conftest import MeshRag
from mesh_rag_pipelines_tests.helpers import grant
from mesh_rag_pipelines_tests.test_user_paths import _only

PRODUCT = "gear_manuals"
_FONT = DictionaryObject(
    {
        NameObject("/Type"): NameObject("/Font"),
        NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"),
    }
)


def write_pdf(
    path: Path,
    pages: list[list[str]],
    outline: list[tuple[str, int, int]] = (),  # type: ignore[assignment]
    title: str | None = None,
    password: str | None = None,
) -> Path:
    """A PDF whose pages hold these lines of text, with outline entries (title, page index,
    depth), a metadata title and a password when given."""
    writer = PdfWriter()
    for lines in pages:
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): _FONT})}
        )
        shown = " ".join(f"({_escaped(line)}) Tj T*" for line in lines)
        content = DecodedStreamObject()
        content.set_data(f"BT /F1 11 Tf 14 TL 72 720 Td {shown} ET".encode("latin-1"))
        page.replace_contents(content)
    parents: dict[int, object] = {}
    for entry, page_index, depth in outline:
        parents[depth] = writer.add_outline_item(
            title=entry, page_number=page_index, parent=parents.get(depth - 1)
        )
    if title:
        writer.add_metadata({"/Title": title})
    if password:
        writer.encrypt(user_password=password)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        writer.write(out)
    return path


def _escaped(line: str) -> str:
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


TENT_PAGES = [
    ["Pitch the tent on level ground, away from dead branches."],
    ["Dry the tent completely before you pack it away for the winter.", "# of stakes: 12"],
    ["Seal the seams every season with the silicone sealer in the repair kit."],
]
TENT_OUTLINE = [("Setting up", 0, 1), ("Care", 1, 1), ("Seams", 2, 2)]


def test_a_pdf_becomes_a_section_per_page_under_its_outline(tmp_path: Path) -> None:
    pdf = write_pdf(tmp_path / "tents/dome.pdf", TENT_PAGES, TENT_OUTLINE, title="Dome tent")
    record = pdf_record(tmp_path, pdf)
    assert (record["path"], record["title"], record["pages"]) == ("tents/dome.pdf", "Dome tent", 3)
    lines = [line for line in record["body"].splitlines() if line]
    assert lines == [
        "# Setting up",
        "###### Page 1",
        "Pitch the tent on level ground, away from dead branches.",
        "# Care",
        "###### Page 2",
        "Dry the tent completely before you pack it away for the winter.",
        " # of stakes: 12",  # text that reads like a heading stays text
        "## Seams",
        "###### Page 3",
        "Seal the seams every season with the silicone sealer in the repair kit.",
    ]
    untitled = write_pdf(tmp_path / "plain.pdf", [["Just one page."]])
    assert pdf_record(tmp_path, untitled)["title"] == "plain.pdf"


def test_a_pdf_that_cannot_be_read_says_why(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.pdf"
    damaged.write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage")
    locked = write_pdf(tmp_path / "locked.pdf", [["Secret."]], password="s3cret")
    scanned = write_pdf(tmp_path / "scanned.pdf", [[], []])
    reasons = {}
    for path in (damaged, locked, scanned):
        try:
            pdf_record(tmp_path, path)
        except RecordError as exc:
            reasons[path.name] = (exc.field, exc.reason.split(":")[0])
    assert reasons == {
        "damaged.pdf": ("body", "not a readable PDF"),
        "locked.pdf": ("body", "the PDF is encrypted with a password"),
        "scanned.pdf": ("body", "none of its 2 pages has a text layer (a scanned image?)"),
    }


def _pdf_product(products_dir: Path, folder: Path) -> Path:
    """A `pdf_files` contract over `folder`, from the shipped policies' one, and the grant."""
    raw = yaml.safe_load(contract_text(find_contract(PRODUCTS_DIR, "hr_policies")))
    raw.update(
        name=PRODUCT,
        description="Northwind's gear manuals, one PDF per product line.",
        document_type="manual",
        source={"kind": "pdf_files", "path": str(folder), "pattern": "**/*.pdf"},
        retrieval={"max_age": "3650d", "allowed_document_types": ["manual"]},
        golden_queries=[],
    )
    raw["schema"]["metadata_fields"] = ["pages"]
    path = products_dir / f"{PRODUCT}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    grant(products_dir, raw["domain"], folders=[str(folder)])
    return path


def _query(mesh_rag: MeshRag, question: str) -> list[dict[str, object]]:
    found = mesh_rag.run("query", question, "--group", "employees", "--json", "-k", "3").stdout
    return json.loads(found)["hits"]


def test_a_folder_of_pdfs_is_indexed_by_page_and_an_unreadable_one_is_quarantined_alone(
    mesh_rag: MeshRag, products_dir: Path, tmp_path: Path
) -> None:
    _only(products_dir)
    folder = tmp_path / "manuals"
    write_pdf(folder / "tents/dome.pdf", TENT_PAGES, TENT_OUTLINE, title="Dome tent")
    write_pdf(
        folder / "stoves/canister.pdf",
        [["Never use the canister stove inside a tent: carbon monoxide builds up."]],
        title="Canister stove",
    )
    (folder / "stoves/broken.pdf").write_bytes(b"%PDF-1.4\nnot really a PDF")
    contract = load_contract(_pdf_product(products_dir, folder))
    assert contract.source.kind == "pdf_files"

    built = mesh_rag.run("build", "--product", PRODUCT).stdout
    assert "FAILED" not in built
    assert f"{PRODUCT}: 2 documents changed, 0 deleted" in built, built
    assert "1 record quarantined" in built, built
    listed = mesh_rag.run("quarantine", "list", "--product", PRODUCT).stdout.splitlines()
    assert len(listed) == 2, listed
    assert listed[0].startswith(f"{PRODUCT}  {folder / 'stoves/broken.pdf'}  ")
    assert "field body: not a readable PDF" in listed[0]

    hits = _query(mesh_rag, "how often should tent seams be sealed")
    assert (hits[0]["doc_id"], hits[0]["section"]) == ("tents/dome.pdf", "Care > Seams > Page 3")
    assert hits[0]["metadata"] == {"pages": 3}

    write_pdf(
        folder / "tents/dome.pdf",
        [*TENT_PAGES[:2], ["Reproof the fly sheet every two years with a wash-in treatment."]],
        TENT_OUTLINE,
        title="Dome tent",
    )
    (folder / "stoves/canister.pdf").unlink()
    again = mesh_rag.run("build", "--product", PRODUCT).stdout
    assert f"{PRODUCT}: 1 documents changed, 1 deleted" in again, again
    assert f"{PRODUCT}: index matches its source" in again, again
    assert {hit["doc_id"] for hit in _query(mesh_rag, "canister stove carbon monoxide")} == {
        "tents/dome.pdf"
    }
    top = _query(mesh_rag, "reproof the fly sheet")[0]
    assert (top["doc_id"], top["section"]) == ("tents/dome.pdf", "Care > Seams > Page 3")
