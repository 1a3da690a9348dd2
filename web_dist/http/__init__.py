"""Pure HTTP helpers the edge and the origins share: RFC 9110 semantics, the origin access guard."""
