#!/usr/bin/env python3
"""Parses every .svg and report.html in a folder with Python's xml.etree, an XML parser
independent of the C++ tests' checker; exits 1 naming the first file that is not well-formed.

  check_xml.py DIR
"""
import pathlib
import sys
import xml.etree.ElementTree as ET


def main():
    folder = pathlib.Path(sys.argv[1])
    files = sorted(folder.glob("*.svg")) + [folder / "report.html"]
    if len(files) < 4:
        print(f"check_xml.py: expected three SVG files and report.html in {folder}", file=sys.stderr)
        return 1
    for path in files:
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as error:
            print(f"{path.name}: not well-formed XML: {error}", file=sys.stderr)
            return 1
        print(f"{path.name}: well-formed, root <{root.tag}>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
