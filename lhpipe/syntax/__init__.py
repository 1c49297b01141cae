"""The syntax stage: `.lhp` text to an AST with exact spans (:func:`parse`) and back to
canonical text (:func:`format_file`, :func:`format_expr`)."""

from lhpipe.syntax.formatter import format_expr, format_file
from lhpipe.syntax.parser import DroppedDecl, ParseResult, parse

__all__ = ["DroppedDecl", "ParseResult", "format_expr", "format_file", "parse"]
