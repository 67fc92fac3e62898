"""GPU marketplaces behind one interface (:class:`subconscious.market.base.Provider`)."""
