export declare function builtinCodeCache(blob: Buffer): { at: number; ids: string[] } | undefined;
export declare function withoutBuiltinCodeCache(blob: Buffer): Buffer | undefined;
