export declare const packageBundleDir: string;
export declare const PACKAGE_ENTRIES: Record<string, string>;
export declare function bundlePackage(): Promise<void>;
