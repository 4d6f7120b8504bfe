import { en } from 'zod/locales';
import * as z from 'zod/mini';

// zod/mini registers no locale of its own (the classic API registers English as it loads): without this, every
// issue would read "Invalid input". Every module of the protocol that builds a schema imports this one, so any
// process that parses one of them (host, plugin, SDK, an embedder) has zod's English messages before its first parse.
z.config(en());
